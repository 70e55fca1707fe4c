"""The chain keys, read only by the process that signs releases and refunds (the worker, or an
operator's `bmad-app escrow` command): never by the internet-facing HTTP process, which gets the key
files' paths checked at start (present, readable by their owner only) and nothing more."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from github_app.config import ConfigError, Settings


def load_chain_keys(settings: Settings) -> Settings:
    """`settings` with the configured chain keys read from their files, every problem reported at once;
    the keys join the log scrubber of this process."""
    problems: list[str] = []
    arbiter = settings.polygon_arbiter_key
    if arbiter is None and settings.polygon_arbiter_key_path:
        arbiter = _read_arbiter_key(settings.polygon_arbiter_key_path, problems)
    solana = settings.solana_authority_key
    if solana is None and settings.solana_authority_keypair_path:
        solana = _read_keypair(settings.solana_authority_keypair_path, problems)
    if problems:
        raise ConfigError(problems)
    loaded = dataclasses.replace(settings, polygon_arbiter_key=arbiter, solana_authority_key=solana)
    _scrub_from_logs(loaded)
    return loaded


def solana_authority_secret(settings: Settings) -> bytes:
    if settings.solana_authority_key is not None:
        return settings.solana_authority_key
    return load_chain_keys(settings).solana_authority_key or b""


def _read_arbiter_key(path: str, problems: list[str]) -> str | None:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"POLYGON_ARBITER_KEY_PATH: cannot read {path!r} ({exc.strerror})")
        return None
    key = text.removeprefix("0x")
    if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
        # Never echo the content: it is a secret, even when malformed.
        problems.append(f"POLYGON_ARBITER_KEY_PATH: {path!r} does not hold a private key (64 hexadecimal digits)")
        return None
    return "0x" + key.lower()


def _read_keypair(path: str, problems: list[str]) -> bytes | None:
    try:
        values = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"SOLANA_AUTHORITY_KEYPAIR_PATH: cannot read {path!r} ({exc.strerror})")
        return None
    except ValueError:
        problems.append(f"SOLANA_AUTHORITY_KEYPAIR_PATH: {path!r} is not a JSON keypair file")
        return None
    if not (
        isinstance(values, list) and len(values) == 64 and all(isinstance(b, int) and 0 <= b < 256 for b in values)
    ):
        problems.append(f"SOLANA_AUTHORITY_KEYPAIR_PATH: {path!r} is not a keypair (a JSON array of 64 bytes)")
        return None
    return bytes(values)


def _scrub_from_logs(settings: Settings) -> None:
    from github_app.logs import SecretScrubber

    values = settings.secret_values()
    if settings.solana_authority_key:
        values.append(json.dumps(list(settings.solana_authority_key)))
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, SecretScrubber):
                f.add(values)
