"""Logging: one line per event, text or JSON, with secrets scrubbed before anything is written."""

from __future__ import annotations

import atexit
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import orjson

# Installation tokens (classic 40-char and the longer `ghs_<appid>_<jwt>` form), app JWTs, auth headers.
# A JWT starts where a token starts: without the lookbehind, text like "eyJeyJeyJ..." (log lines quote
# what users wrote) would be rescanned from every "eyJ", quadratically.
_TOKEN_PATTERNS = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_.\-]+|(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"
    r"|(?i:(?:bearer|token)\s+)[A-Za-z0-9_.\-]{12,})"
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class SecretScrubber(logging.Filter):
    """Removes known secret values and anything shaped like a token from every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        """More values to remove (the chain keys, once the process that signs has read them)."""
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s and len(s) >= 6)}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        # Every token shape the pattern knows holds one of these; most lines hold none, and skip the regex.
        lowered = text.lower()
        if "gh" in lowered or "eyj" in lowered or "token" in lowered or "bearer" in lowered:
            return _TOKEN_PATTERNS.sub("[redacted]", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # A traceback quotes what failed (an RPC URL with its key, say): rendered and scrubbed here,
            # and the formatters use this text.
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_text:
            doc["exception"] = record.exc_text
        elif record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items() if v is not None)
        return f"{line} {extra}" if extra else line


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr through a 64 KiB buffer, flushed every quarter second and at exit. One write per log line
    was a tenth of the ingress's CPU at a few thousand deliveries a second; the inbox, not the log, is
    the record of what arrived, so a crash losing the last quarter second of log lines loses nothing."""

    FLUSH_EVERY = 0.25

    def __init__(self) -> None:
        stream = open(sys.stderr.fileno(), "w", buffering=64 * 1024, encoding="utf-8", closefd=False)  # noqa: SIM115
        super().__init__(stream)
        threading.Thread(target=self._flush_forever, name="log-flusher", daemon=True).start()
        atexit.register(self.flush)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_EVERY)
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)


def setup_logging(
    level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (), *, buffered: bool = True
) -> None:
    handler: logging.StreamHandler = BufferedStderrHandler() if buffered else logging.StreamHandler(sys.stderr)  # type: ignore[type-arg]
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(SecretScrubber(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The Solana client's HTTP library logs every RPC call at INFO: one line per request, in the worker's
    # log and in the output of `bmad-app wallet set`.
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "asyncio", "alembic.runtime.plugins", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    migration = logging.getLogger("alembic.runtime.migration")
    for old_filter in [f for f in migration.filters if isinstance(f, AlembicSetupFilter)]:
        migration.removeFilter(old_filter)
    migration.addFilter(AlembicSetupFilter())


class AlembicSetupFilter(logging.Filter):
    """Keeps alembic's "Running upgrade" lines and drops its set-up lines (which dialect, whether DDL is
    transactional): they say nothing an operator acts on, at every start."""

    SETUP_PREFIXES = ("Context impl", "Will assume")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not str(record.msg).startswith(self.SETUP_PREFIXES)
