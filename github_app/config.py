"""Settings from the environment (12-factor), validated once at start.

Every problem is reported with the variable's name and what is wrong, all at once, so an operator fixes
a bad deployment in one go. A `.env` file in the working directory is read too; real environment
variables win over it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from platformdirs import user_data_dir

from github_app.db.app_schema import APP_SCHEMA_VARIABLE, DEFAULT_APP_SCHEMA, check_schema_name

if TYPE_CHECKING:
    from github_app.http_limits import HttpLimits

APP_NAME = "bmad-marketplace-app"
T = TypeVar("T")


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def default_database_url() -> str:
    path = Path(user_data_dir(APP_NAME)) / "bmad-app.sqlite3"
    return f"sqlite+aiosqlite:///{path}"


@dataclass(frozen=True)
class Setting:
    """One documented variable: the README's configuration table is generated from these."""

    name: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "SQLite file in the per-user data directory",
        "SQLAlchemy URL: `postgresql://user@host:5432/db` or `sqlite:///path`",
    ),
    Setting(
        "DATABASE_APP_SCHEMA",
        "`bmad_app`",
        "PostgreSQL schema of the app's own tables and `alembic_version` (the seed's stay in `public`)",
    ),
    Setting("GITHUB_APP_ID", "(none)", "The GitHub App's numeric id"),
    Setting("GITHUB_PRIVATE_KEY", "(none)", "The app's private key, PEM text (`\\n` escapes allowed)"),
    Setting("GITHUB_PRIVATE_KEY_PATH", "(none)", "Path to the PEM file, instead of GITHUB_PRIVATE_KEY"),
    Setting(
        "GITHUB_WEBHOOK_SECRET", "(none)", "Webhook secret; a comma-separated list accepts any of them (for rotation)"
    ),
    Setting("GITHUB_API_URL", "https://api.github.com", "REST API base (GitHub Enterprise: https://HOST/api/v3)"),
    Setting("API_REQUESTS_PER_MINUTE", "600", "Requests one API key may make per minute to each HTTP process"),
    Setting(
        "GITHUB_URL",
        "https://github.com (GitHub Enterprise: GITHUB_API_URL without `/api/v3`)",
        "GitHub's web host, where `bmad-app register` creates the app",
    ),
    Setting("HOST", "127.0.0.1", "Address the HTTP server binds"),
    Setting("PORT", "3000", "Port the HTTP server binds"),
    Setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting("LOG_FORMAT", "text", "`text` or `json` (one JSON object per line)"),
    Setting("WEB_PROCESSES", "1", "HTTP server processes sharing the port (SO_REUSEPORT); PostgreSQL only"),
    Setting("WORKER_CONCURRENCY", "4", "Deliveries one worker process handles at once (SQLite: always 1)"),
    Setting("WORKER_MAX_ATTEMPTS", "8", "Attempts before a delivery is marked dead"),
    Setting(
        "WORKER_LEASE_SECONDS",
        "10",
        "How long a delivery or escrow release stays reserved after its holder's last heartbeat: a dead "
        "process's work is taken over this long after it died",
    ),
    Setting(
        "WORKER_HEARTBEAT_SECONDS",
        "2",
        "How often a live worker renews the leases of what it holds (less than half the lease)",
    ),
    Setting(
        "WORKER_HANDLER_TIMEOUT_SECONDS",
        "110",
        "How long one delivery's handlers may run before the attempt counts as failed",
    ),
    Setting(
        "WORKER_RETRY_BASE_SECONDS", "5", "First retry delay; doubles each attempt (with jitter), capped at 1 hour"
    ),
    Setting("WORKER_POLL_SECONDS", "1", "How often an idle worker looks for work"),
    Setting(
        "WORKER_BURST_DEFER_SECONDS",
        "10",
        "During a burst of deliveries, let the ingress have the machine for up to this long; 0 = off",
    ),
    Setting("WORKER_NICE", "10", "Scheduling niceness of the worker process `serve` starts on PostgreSQL (0-19)"),
    Setting(
        "GITHUB_WRITES_PER_SECOND",
        "1",
        "Pace of check run and comment writes per installation, shared by every process "
        "(GitHub asks for about one per second)",
    ),
    Setting("RECOVER_INTERVAL_MINUTES", "0", "Run missed-delivery recovery this often in the worker; 0 = off"),
    Setting("RECOVER_WINDOW_HOURS", "24", "How far back periodic recovery looks (GitHub keeps 3 days)"),
    Setting("POLYGON_RPC_URL", "(none)", "Polygon JSON-RPC endpoint; unset = Polygon is not configured"),
    Setting("POLYGON_CHAIN_ID", "137", "Chain id the RPC endpoint must report (Amoy testnet: 80002)"),
    Setting("POLYGON_ESCROW_CONTRACT", "(none)", "Address of the deployed `Escrow` contract (EIP-55)"),
    Setting("POLYGON_ARBITER_KEY", "(none)", "Private key (hex) of the contract's arbiter; a secret"),
    Setting("POLYGON_ARBITER_KEY_PATH", "(none)", "File holding the arbiter key, instead of POLYGON_ARBITER_KEY"),
    Setting("POLYGON_TREASURY", "(none)", "Address that receives the platform fee (used by `escrow deploy`)"),
    Setting(
        "POLYGON_TOKENS",
        "(none)",
        "ERC-20 tokens by currency: `USDC=0x...,USDT=0x...,ETH=0x...` (ETH on Polygon is WETH)",
    ),
    Setting("POLYGON_CONFIRMATIONS", "12", "Blocks on top of a release before it counts as paid"),
    Setting("POLYGON_EXPLORER_URL", "https://polygonscan.com", "Explorer base for transaction links"),
    Setting(
        "POLYGON_REPLACE_SECONDS",
        "120",
        "A release not mined after this long is replaced at its nonce with a fee at least 12% higher; 0 = never",
    ),
    Setting("SOLANA_RPC_URL", "(none)", "Solana JSON-RPC endpoint; unset = Solana is not configured"),
    Setting("SOLANA_AUTHORITY_KEYPAIR_PATH", "(none)", "Keypair file (JSON array) of the escrow accounts' authority"),
    Setting("SOLANA_TREASURY", "(none)", "Address that receives the platform fee on Solana"),
    Setting(
        "SOLANA_USDC_MINT",
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "Mint of the `USDC-SPL` currency (devnet has its own)",
    ),
    Setting("SOLANA_COMMITMENT", "finalized", "`confirmed` or `finalized`: when a release counts as paid"),
    Setting("SOLANA_EXPLORER_URL", "https://explorer.solana.com", "Explorer base for transaction links"),
    Setting("ESCROW_SYNC_SECONDS", "60", "How often the worker reads pending escrows' funding on-chain; 0 = off"),
    Setting("ESCROW_RELEASE_CONCURRENCY", "8", "Releases one worker process has in flight at once"),
    Setting(
        "GITHUB_APP_SLUG",
        "bmad-marketplace",
        "The app's slug: `@slug` starts a bot command, and `slug[bot]` is the account of its reactions",
    ),
    Setting(
        "HTTP_HEADER_TIMEOUT_SECONDS",
        "10",
        "A new connection whose request headers are not complete by then is closed",
    ),
    Setting(
        "HTTP_IDLE_TIMEOUT_SECONDS",
        "15",
        "A kept-alive connection with no complete next request by then is closed (a proxy in front must "
        "drop its idle upstream connections sooner)",
    ),
    Setting(
        "HTTP_BODY_STALL_SECONDS", "10", "A request body that sends nothing for this long is answered 408 and closed"
    ),
    Setting("HTTP_BODY_TIMEOUT_SECONDS", "30", "A request body not complete this long after it began is answered 408"),
    Setting(
        "HTTP_MAX_CONNECTIONS",
        "1024",
        "Open connections per HTTP process (lowered to the file limit minus 256); past it the oldest connection "
        "still waiting for or sending its request is closed",
    ),
    Setting(
        "HTTP_BODY_BUDGET_BYTES",
        "67108864",
        "Bytes of request bodies one HTTP process holds at once; a body that would go past it is answered 503 "
        "(below 26214400, GitHub's largest deliveries cannot get in)",
    ),
)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    database_app_schema: str = DEFAULT_APP_SCHEMA
    github_app_id: int | None = None
    github_private_key: str | None = field(default=None, repr=False)
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    github_api_url: str = "https://api.github.com"
    github_url: str = "https://github.com"
    api_requests_per_minute: int = 600
    host: str = "127.0.0.1"
    port: int = 3000
    log_level: str = "INFO"
    log_format: str = "text"
    web_processes: int = 1
    worker_concurrency: int = 4
    worker_max_attempts: int = 8
    worker_lease_seconds: float = 10.0
    worker_heartbeat_seconds: float = 2.0
    worker_handler_timeout_seconds: float = 110.0
    worker_retry_base_seconds: float = 5.0
    worker_poll_seconds: float = 1.0
    worker_nice: int = 10
    worker_burst_defer_seconds: float = 10.0
    recover_interval_minutes: float = 0.0
    recover_window_hours: float = 24.0
    github_writes_per_second: float = 1.0
    polygon_rpc_url: str | None = None
    polygon_chain_id: int = 137
    polygon_escrow_contract: str | None = None
    polygon_arbiter_key: str | None = field(default=None, repr=False)
    # A path only: the key itself is read by the process that releases (github_app.chains.keys).
    polygon_arbiter_key_path: str | None = None
    polygon_treasury: str | None = None
    polygon_tokens: tuple[tuple[str, str], ...] = ()
    polygon_confirmations: int = 12
    polygon_explorer_url: str = "https://polygonscan.com"
    polygon_replace_seconds: float = 120.0
    solana_rpc_url: str | None = None
    solana_authority_keypair_path: str | None = None
    # Filled by github_app.chains.keys in the process that releases; never by load_settings.
    solana_authority_key: bytes | None = field(default=None, repr=False)
    solana_treasury: str | None = None
    solana_usdc_mint: str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    solana_commitment: str = "finalized"
    solana_explorer_url: str = "https://explorer.solana.com"
    escrow_sync_seconds: float = 60.0
    escrow_release_concurrency: int = 8
    github_app_slug: str = "bmad-marketplace"
    http_header_timeout_seconds: float = 10.0
    http_idle_timeout_seconds: float = 15.0
    http_body_stall_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    http_max_connections: int = 1024
    http_body_budget_bytes: int = 64 * 1024 * 1024

    def http_limits(self) -> HttpLimits:
        from github_app.http_limits import HttpLimits

        return HttpLimits(
            header_timeout=self.http_header_timeout_seconds,
            idle_timeout=self.http_idle_timeout_seconds,
            body_stall=self.http_body_stall_seconds,
            body_timeout=self.http_body_timeout_seconds,
            max_connections=self.http_max_connections,
            body_budget=self.http_body_budget_bytes,
        )

    def secret_values(self) -> list[str]:
        """What the log scrubber must never let through."""
        values = list(self.webhook_secrets)
        if self.github_private_key:
            values.append(self.github_private_key.strip())
        if self.polygon_arbiter_key:
            key = self.polygon_arbiter_key
            values += [key, key.removeprefix("0x"), "0x" + key.removeprefix("0x")]
        for url in (self.polygon_rpc_url, self.solana_rpc_url):
            if url:
                values += url_secrets(url)
        return values

    def polygon_problem(self) -> str | None:
        """Why Polygon releases cannot go out from this process, or None when they can."""
        missing = [
            name
            for name, value in (
                ("POLYGON_RPC_URL", self.polygon_rpc_url),
                ("POLYGON_ESCROW_CONTRACT", self.polygon_escrow_contract),
                ("POLYGON_ARBITER_KEY", self.polygon_arbiter_key or self.polygon_arbiter_key_path),
            )
            if not value
        ]
        return f"Polygon is not configured (missing {', '.join(missing)})" if missing else None

    def solana_problem(self) -> str | None:
        missing = [
            name
            for name, value in (
                ("SOLANA_RPC_URL", self.solana_rpc_url),
                ("SOLANA_AUTHORITY_KEYPAIR_PATH", self.solana_authority_keypair_path),
                ("SOLANA_TREASURY", self.solana_treasury),
            )
            if not value
        ]
        return f"Solana is not configured (missing {', '.join(missing)})" if missing else None

    def missing_github_settings(self) -> list[str]:
        missing = []
        if self.github_app_id is None:
            missing.append("GITHUB_APP_ID")
        if self.github_private_key is None:
            missing.append("GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)")
        if not self.webhook_secrets:
            missing.append("GITHUB_WEBHOOK_SECRET")
        return missing


def _environ(environ: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    if environ is not None:
        return dict(environ)
    merged: dict[str, str] = {}
    path = Path(env_file) if env_file else Path(".env")
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def parse(self, name: str, default: T, convert: Callable[[str], T], what: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except (ValueError, TypeError):
            self.problems.append(f"{name}: must be {what}, got {value!r}")
            return default

    def number(self, name: str, default: float, *, minimum: float, integer: bool = False) -> Any:
        def convert(v: str) -> float:
            n = int(v) if integer else float(v)
            if n < minimum:
                raise ValueError
            return n

        what = f"{'an integer' if integer else 'a number'} >= {minimum:g}"
        return self.parse(name, default, convert, what)

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
        def convert(v: str) -> str:
            v = v.upper() if upper else v.lower()
            if v not in choices:
                raise ValueError
            return v

        return self.parse(name, default, convert, "one of " + ", ".join(choices))


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError
    return value.rstrip("/")


def _private_key(r: _Reader) -> str | None:
    inline, path = r.raw("GITHUB_PRIVATE_KEY"), r.raw("GITHUB_PRIVATE_KEY_PATH")
    if inline and path:
        r.problems.append("GITHUB_PRIVATE_KEY and GITHUB_PRIVATE_KEY_PATH: set only one of them")
        return None
    if path:
        if not _private_file(r, "GITHUB_PRIVATE_KEY_PATH", path):
            return None
        try:
            inline = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            r.problems.append(f"GITHUB_PRIVATE_KEY_PATH: cannot read {path!r} ({exc.strerror})")
            return None
        source = "GITHUB_PRIVATE_KEY_PATH"
    else:
        source = "GITHUB_PRIVATE_KEY"
    if inline is None:
        return None
    key = inline.replace("\\n", "\n").strip() + "\n"
    if "-----BEGIN" not in key or "PRIVATE KEY-----" not in key:
        # Never echo the value: it is a secret, even when malformed.
        r.problems.append(f"{source}: is not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----')")
        return None
    return key


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = None) -> Settings:
    r = _Reader(_environ(environ, env_file))
    secrets_raw = r.raw("GITHUB_WEBHOOK_SECRET")
    secrets = tuple(s.strip() for s in secrets_raw.split(",") if s.strip()) if secrets_raw else ()
    settings = Settings(
        database_url=r.parse("DATABASE_URL", default_database_url(), _database_url, "a postgresql:// or sqlite:// URL"),
        database_app_schema=r.parse(
            APP_SCHEMA_VARIABLE, DEFAULT_APP_SCHEMA, check_schema_name, "a lower-case schema name other than public"
        ),
        github_app_id=r.parse("GITHUB_APP_ID", None, _positive_int, "a positive integer"),
        github_private_key=_private_key(r),
        webhook_secrets=secrets,
        github_api_url=r.parse("GITHUB_API_URL", "https://api.github.com", _http_url, "an http(s) URL"),
        github_url=r.parse("GITHUB_URL", None, _http_url, "an http(s) URL") or _web_host(r),
        api_requests_per_minute=r.number("API_REQUESTS_PER_MINUTE", 600, minimum=1, integer=True),
        host=r.raw("HOST") or "127.0.0.1",
        port=r.parse("PORT", 3000, _port, "a port number from 1 to 65535"),
        log_level=r.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
        log_format=r.choice("LOG_FORMAT", "text", ("text", "json")),
        web_processes=r.number("WEB_PROCESSES", 1, minimum=1, integer=True),
        worker_concurrency=r.number("WORKER_CONCURRENCY", 4, minimum=1, integer=True),
        worker_max_attempts=r.number("WORKER_MAX_ATTEMPTS", 8, minimum=1, integer=True),
        worker_lease_seconds=r.number("WORKER_LEASE_SECONDS", 10.0, minimum=1),
        worker_heartbeat_seconds=r.number("WORKER_HEARTBEAT_SECONDS", 2.0, minimum=0.1),
        worker_handler_timeout_seconds=r.number("WORKER_HANDLER_TIMEOUT_SECONDS", 110.0, minimum=1),
        worker_retry_base_seconds=r.number("WORKER_RETRY_BASE_SECONDS", 5.0, minimum=0),
        worker_poll_seconds=r.number("WORKER_POLL_SECONDS", 1.0, minimum=0.01),
        worker_nice=r.number("WORKER_NICE", 10, minimum=0, integer=True),
        worker_burst_defer_seconds=r.number("WORKER_BURST_DEFER_SECONDS", 10.0, minimum=0),
        recover_interval_minutes=r.number("RECOVER_INTERVAL_MINUTES", 0.0, minimum=0),
        recover_window_hours=r.number("RECOVER_WINDOW_HOURS", 24.0, minimum=0.1),
        github_writes_per_second=r.number("GITHUB_WRITES_PER_SECOND", 1.0, minimum=0.01),
        polygon_rpc_url=r.parse("POLYGON_RPC_URL", None, _http_url, "an http(s) URL"),
        polygon_chain_id=r.parse("POLYGON_CHAIN_ID", 137, _positive_int, "a positive integer"),
        polygon_escrow_contract=r.parse("POLYGON_ESCROW_CONTRACT", None, _evm_address, "an EIP-55 address"),
        polygon_arbiter_key=_arbiter_key(r),
        polygon_arbiter_key_path=_arbiter_key_path(r),
        polygon_treasury=r.parse("POLYGON_TREASURY", None, _evm_address, "an EIP-55 address"),
        polygon_tokens=r.parse("POLYGON_TOKENS", (), _token_list, "a list SYMBOL=0xADDRESS,... of EIP-55 addresses"),
        polygon_confirmations=r.number("POLYGON_CONFIRMATIONS", 12, minimum=1, integer=True),
        polygon_explorer_url=r.parse("POLYGON_EXPLORER_URL", "https://polygonscan.com", _http_url, "an http(s) URL"),
        polygon_replace_seconds=r.number("POLYGON_REPLACE_SECONDS", 120.0, minimum=0),
        solana_rpc_url=r.parse("SOLANA_RPC_URL", None, _http_url, "an http(s) URL"),
        solana_authority_keypair_path=_keypair_path(r),
        solana_treasury=r.parse("SOLANA_TREASURY", None, _solana_address, "a base58 32-byte address"),
        solana_usdc_mint=r.parse(
            "SOLANA_USDC_MINT", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", _solana_address, "a base58 address"
        ),
        solana_commitment=r.choice("SOLANA_COMMITMENT", "finalized", ("confirmed", "finalized")),
        solana_explorer_url=r.parse("SOLANA_EXPLORER_URL", "https://explorer.solana.com", _http_url, "an http(s) URL"),
        escrow_sync_seconds=r.number("ESCROW_SYNC_SECONDS", 60.0, minimum=0),
        escrow_release_concurrency=r.number("ESCROW_RELEASE_CONCURRENCY", 8, minimum=1, integer=True),
        github_app_slug=r.parse("GITHUB_APP_SLUG", "bmad-marketplace", _slug, "a GitHub App slug (letters, digits, -)"),
        http_header_timeout_seconds=r.number("HTTP_HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        http_idle_timeout_seconds=r.number("HTTP_IDLE_TIMEOUT_SECONDS", 15.0, minimum=0.1),
        http_body_stall_seconds=r.number("HTTP_BODY_STALL_SECONDS", 10.0, minimum=0.1),
        http_body_timeout_seconds=r.number("HTTP_BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1),
        http_max_connections=r.number("HTTP_MAX_CONNECTIONS", 1024, minimum=1, integer=True),
        http_body_budget_bytes=r.number("HTTP_BODY_BUDGET_BYTES", 64 * 1024 * 1024, minimum=65536, integer=True),
    )
    if settings.worker_heartbeat_seconds * 2 > settings.worker_lease_seconds:
        # One late beat must not lose a live holder its work.
        r.problems.append(
            "WORKER_HEARTBEAT_SECONDS: must be at most half of WORKER_LEASE_SECONDS "
            f"({settings.worker_lease_seconds:g})"
        )
    if settings.webhook_secrets and any(len(s) < 8 for s in settings.webhook_secrets):
        r.problems.append("GITHUB_WEBHOOK_SECRET: each secret must be at least 8 characters")
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def _web_host(r: _Reader) -> str:
    """GitHub's web host from its API base: api.github.com is github.com, and GitHub Enterprise serves
    its API under /api/v3 of the web host."""
    api = (r.raw("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    if api == "https://api.github.com":
        return "https://github.com"
    return api.removesuffix("/api/v3")


def _slug(v: str) -> str:
    slug = v.strip().lower()
    if not slug or len(slug) > 100 or not all(c.isalnum() or c == "-" for c in slug) or not slug.isascii():
        raise ValueError(v)
    return slug


def _positive_int(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError
    return n


def _port(v: str) -> int:
    n = int(v)
    if not 1 <= n <= 65535:
        raise ValueError
    return n


def _database_url(v: str) -> str:
    from github_app.db.urls import backend_name

    if backend_name(v) not in ("postgresql", "sqlite"):
        raise ValueError
    return v


def _evm_address(v: str) -> str:
    from github_app.chains.addresses import evm_address

    return evm_address(v)


def _solana_address(v: str) -> str:
    from github_app.chains.addresses import solana_address

    return solana_address(v)


def _token_list(v: str) -> tuple[tuple[str, str], ...]:
    tokens: dict[str, str] = {}
    for item in v.split(","):
        if not item.strip():
            continue
        symbol, sep, address = item.partition("=")
        if not sep or not symbol.strip():
            raise ValueError
        tokens[symbol.strip().upper()] = _evm_address(address)
    return tuple(sorted(tokens.items()))


def _arbiter_key(r: _Reader) -> str | None:
    """The inline key only; a key file is checked here (present, private) and read by the process
    that releases."""
    inline = r.raw("POLYGON_ARBITER_KEY")
    if inline and r.raw("POLYGON_ARBITER_KEY_PATH"):
        r.problems.append("POLYGON_ARBITER_KEY and POLYGON_ARBITER_KEY_PATH: set only one of them")
        return None
    if inline is None:
        return None
    key = inline.removeprefix("0x")
    if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
        # Never echo the value: it is a secret, even when malformed.
        r.problems.append("POLYGON_ARBITER_KEY: is not a private key (expected 64 hexadecimal digits)")
        return None
    return "0x" + key.lower()


def _arbiter_key_path(r: _Reader) -> str | None:
    path = r.raw("POLYGON_ARBITER_KEY_PATH")
    if path is None or r.raw("POLYGON_ARBITER_KEY"):
        return None
    return path if _private_file(r, "POLYGON_ARBITER_KEY_PATH", path) else None


def _keypair_path(r: _Reader) -> str | None:
    path = r.raw("SOLANA_AUTHORITY_KEYPAIR_PATH")
    if path is None:
        return None
    return path if _private_file(r, "SOLANA_AUTHORITY_KEYPAIR_PATH", path) else None


def _private_file(r: _Reader, name: str, path: str) -> bool:
    """A key file must exist and be the owner's alone: a key readable by a group or by everyone is
    refused rather than used (whoever can read it can move the money or act as the app)."""
    try:
        mode = os.stat(Path(path).expanduser()).st_mode
    except OSError as exc:
        r.problems.append(f"{name}: cannot read {path!r} ({exc.strerror})")
        return False
    if not stat.S_ISREG(mode):
        r.problems.append(f"{name}: {path!r} is not a file")
        return False
    if mode & 0o077:
        r.problems.append(
            f"{name}: {path!r} is open to its group or to others (mode {stat.S_IMODE(mode):04o}): "
            f"run `chmod 600 {path}` (readable by its owner only)"
        )
        return False
    return True


def url_secrets(url: str) -> list[str]:
    """The parts of an RPC URL that may carry an API key (hosted providers put it in the path, the
    query or the user info): what logs, stored errors and command output must never show. The host
    itself is not a secret and stays visible."""
    parts = urlsplit(url)
    values = [url, url.rstrip("/")]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail.strip("/")) >= 6:
        values.append(tail)
    values += [p for p in parts.path.split("/") if len(p) >= 8]
    values += [v for _, _, v in (q.partition("=") for q in parts.query.split("&")) if len(v) >= 8]
    if parts.password:
        values.append(parts.password)
    if parts.username and len(parts.username) >= 8:
        values.append(parts.username)
    return values
