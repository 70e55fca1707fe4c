"""Settings from the environment (12-factor), validated once at start.

Every problem is reported with the variable's name and what is wrong, all at once, so an operator fixes
a bad deployment in one go. A `.env` file in the working directory is read too; real environment
variables win over it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from platformdirs import user_data_dir

from github_app.db.app_schema import APP_SCHEMA_VARIABLE, DEFAULT_APP_SCHEMA, check_schema_name

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
    Setting("HOST", "127.0.0.1", "Address the HTTP server binds"),
    Setting("PORT", "3000", "Port the HTTP server binds"),
    Setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting("LOG_FORMAT", "text", "`text` or `json` (one JSON object per line)"),
    Setting("WEB_PROCESSES", "1", "HTTP server processes sharing the port (SO_REUSEPORT); PostgreSQL only"),
    Setting("WORKER_CONCURRENCY", "4", "Deliveries one worker process handles at once (SQLite: always 1)"),
    Setting("WORKER_MAX_ATTEMPTS", "8", "Attempts before a delivery is marked dead"),
    Setting("WORKER_LEASE_SECONDS", "120", "How long a claimed delivery is reserved before another worker may take it"),
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
)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    database_app_schema: str = DEFAULT_APP_SCHEMA
    github_app_id: int | None = None
    github_private_key: str | None = field(default=None, repr=False)
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    github_api_url: str = "https://api.github.com"
    host: str = "127.0.0.1"
    port: int = 3000
    log_level: str = "INFO"
    log_format: str = "text"
    web_processes: int = 1
    worker_concurrency: int = 4
    worker_max_attempts: int = 8
    worker_lease_seconds: float = 120.0
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
    polygon_treasury: str | None = None
    polygon_tokens: tuple[tuple[str, str], ...] = ()
    polygon_confirmations: int = 12
    polygon_explorer_url: str = "https://polygonscan.com"
    polygon_replace_seconds: float = 120.0
    solana_rpc_url: str | None = None
    solana_authority_keypair_path: str | None = None
    solana_treasury: str | None = None
    solana_usdc_mint: str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    solana_commitment: str = "finalized"
    solana_explorer_url: str = "https://explorer.solana.com"
    escrow_sync_seconds: float = 60.0
    escrow_release_concurrency: int = 8
    github_app_slug: str = "bmad-marketplace"

    def secret_values(self) -> list[str]:
        """What the log scrubber must never let through."""
        values = list(self.webhook_secrets)
        if self.github_private_key:
            values.append(self.github_private_key.strip())
        if self.polygon_arbiter_key:
            key = self.polygon_arbiter_key
            values += [key, key.removeprefix("0x"), "0x" + key.removeprefix("0x")]
        return values

    def polygon_problem(self) -> str | None:
        """Why Polygon releases cannot go out from this process, or None when they can."""
        missing = [
            name
            for name, value in (
                ("POLYGON_RPC_URL", self.polygon_rpc_url),
                ("POLYGON_ESCROW_CONTRACT", self.polygon_escrow_contract),
                ("POLYGON_ARBITER_KEY", self.polygon_arbiter_key),
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
        host=r.raw("HOST") or "127.0.0.1",
        port=r.parse("PORT", 3000, _port, "a port number from 1 to 65535"),
        log_level=r.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
        log_format=r.choice("LOG_FORMAT", "text", ("text", "json")),
        web_processes=r.number("WEB_PROCESSES", 1, minimum=1, integer=True),
        worker_concurrency=r.number("WORKER_CONCURRENCY", 4, minimum=1, integer=True),
        worker_max_attempts=r.number("WORKER_MAX_ATTEMPTS", 8, minimum=1, integer=True),
        worker_lease_seconds=r.number("WORKER_LEASE_SECONDS", 120.0, minimum=1),
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
    )
    if settings.webhook_secrets and any(len(s) < 8 for s in settings.webhook_secrets):
        r.problems.append("GITHUB_WEBHOOK_SECRET: each secret must be at least 8 characters")
    if r.problems:
        raise ConfigError(r.problems)
    return settings


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
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(v).get_backend_name()
    except ArgumentError as exc:
        raise ValueError from exc
    if backend not in ("postgresql", "sqlite"):
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
    inline, path = r.raw("POLYGON_ARBITER_KEY"), r.raw("POLYGON_ARBITER_KEY_PATH")
    if inline and path:
        r.problems.append("POLYGON_ARBITER_KEY and POLYGON_ARBITER_KEY_PATH: set only one of them")
        return None
    source = "POLYGON_ARBITER_KEY"
    if path:
        source = "POLYGON_ARBITER_KEY_PATH"
        try:
            inline = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            r.problems.append(f"POLYGON_ARBITER_KEY_PATH: cannot read {path!r} ({exc.strerror})")
            return None
    if inline is None:
        return None
    key = inline.removeprefix("0x")
    if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
        # Never echo the value: it is a secret, even when malformed.
        r.problems.append(f"{source}: is not a private key (expected 64 hexadecimal digits)")
        return None
    return "0x" + key.lower()


def _keypair_path(r: _Reader) -> str | None:
    path = r.raw("SOLANA_AUTHORITY_KEYPAIR_PATH")
    if path is None:
        return None
    try:
        values = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        r.problems.append(f"SOLANA_AUTHORITY_KEYPAIR_PATH: cannot read {path!r} ({exc.strerror})")
        return None
    except ValueError:
        r.problems.append(f"SOLANA_AUTHORITY_KEYPAIR_PATH: {path!r} is not a JSON keypair file")
        return None
    if not (
        isinstance(values, list) and len(values) == 64 and all(isinstance(b, int) and 0 <= b < 256 for b in values)
    ):
        r.problems.append(f"SOLANA_AUTHORITY_KEYPAIR_PATH: {path!r} is not a keypair (a JSON array of 64 bytes)")
        return None
    return path
