"""Missed-delivery recovery: GitHub never retries a failed delivery by itself, so we ask it to.

Runs on demand (`bmad-app deliveries recover --since 24h`) or periodically in the worker
(RECOVER_INTERVAL_MINUTES). On PostgreSQL an advisory lock lets one worker at a time do it, so a
fleet of workers does not ask GitHub for the same redeliveries over and over.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from github_app.github.redeliver import RecoverReport, recover_missed_deliveries
from github_app.inbox import store
from github_app.runtime import Runtime

log = logging.getLogger(__name__)

# An arbitrary, fixed key for pg_try_advisory_xact_lock: "bmad" in ASCII.
_ADVISORY_KEY = 0x626D6164


class RecoveryUnavailable(Exception):
    pass


async def recover_once(runtime: Runtime, window: timedelta) -> RecoverReport | None:
    """None when another process is already recovering."""
    if runtime.github is None:
        raise RecoveryUnavailable("recovery needs the app's credentials: set GITHUB_APP_ID and GITHUB_PRIVATE_KEY")

    async def known(guids: set[str]) -> set[str]:
        async with runtime.engine.connect() as conn:
            return await store.known_ids(conn, guids)

    since = datetime.now(UTC) - window
    if runtime.is_sqlite:
        return await recover_missed_deliveries(runtime.github, since, known)
    async with runtime.engine.connect() as conn, conn.begin():
        got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})).scalar()
        if not got:
            return None
        return await recover_missed_deliveries(runtime.github, since, known)


async def periodic_recovery(runtime: Runtime, stop: asyncio.Event) -> None:
    interval = runtime.settings.recover_interval_minutes * 60
    window = timedelta(hours=runtime.settings.recover_window_hours)
    while not stop.is_set():
        try:
            report = await recover_once(runtime, window)
            if report is not None:
                log.info(
                    "delivery recovery",
                    extra={
                        "scanned": report.scanned,
                        "failed": report.failed,
                        "redelivered": report.redelivered,
                        "errors": report.errors,
                    },
                )
        except RecoveryUnavailable as exc:
            log.warning("periodic recovery is off: %s", exc)
            return
        except Exception as exc:  # GitHub or the database may be away; try again next time
            log.error("delivery recovery failed", extra={"error": repr(exc)})
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


async def recover(settings: object, window: timedelta) -> RecoverReport:
    from github_app.config import Settings

    assert isinstance(settings, Settings)
    runtime = await Runtime.create(settings)
    try:
        report = await recover_once(runtime, window)
    finally:
        await runtime.close()
    if report is None:
        raise RecoveryUnavailable("another process is recovering deliveries right now; try again shortly")
    return report
