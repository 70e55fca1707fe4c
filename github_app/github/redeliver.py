"""Recovery of webhook deliveries that never reached the app.

GitHub does not retry a failed delivery on its own; it only keeps a log of deliveries (three days)
and redelivers one when asked. This walks that log and asks again for every delivery that failed and
that the inbox has not seen under the same GUID.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from gidgethub import HTTPException

from github_app.github.client import GitHubApp

log = logging.getLogger(__name__)

# The largest page GitHub serves for the deliveries log.
DELIVERIES_PER_PAGE = 100
# Guids are handed to the ``known`` callback in slices, so a database query stays within the
# parameter limits of SQLite and PostgreSQL even after a long outage.
KNOWN_BATCH = 500

KnownGuids = Callable[[set[str]], Awaitable[set[str]]]


@dataclass
class RecoverReport:
    """What a recovery run saw and did. ``failed`` counts GUIDs, not attempts."""

    scanned: int = 0
    failed: int = 0
    already_known: int = 0
    redelivered: int = 0
    errors: int = 0
    redelivered_guids: list[str] = field(default_factory=list)


def delivery_succeeded(entry: Mapping[str, Any]) -> bool:
    return entry.get("status") == "OK" and int(entry.get("status_code") or 0) < 400


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def recover_missed_deliveries(app: GitHubApp, since: datetime, known: KnownGuids) -> RecoverReport:
    """Ask GitHub to redeliver, once per GUID, each failed delivery since ``since`` unknown to the inbox.

    ``known`` receives a set of GUIDs and returns those already in the inbox.
    """
    since = _as_utc(since)
    gh = app.app_client()
    report = RecoverReport()
    succeeded: set[str] = set()
    # Newest failed attempt per GUID; any attempt id of a delivery can be redelivered.
    failed_attempt: dict[str, int] = {}
    deliveries = gh.getiter("/app/hook/deliveries{?per_page}", {"per_page": DELIVERIES_PER_PAGE})
    async with aclosing(deliveries):
        async for entry in deliveries:
            # The log is served newest first: the first entry older than the window ends the scan.
            if _as_utc(datetime.fromisoformat(entry["delivered_at"])) < since:
                break
            report.scanned += 1
            guid = entry["guid"]
            if delivery_succeeded(entry):
                succeeded.add(guid)
            else:
                failed_attempt.setdefault(guid, int(entry["id"]))

    # A later redelivery that succeeded means the app has the event, whatever earlier attempts did.
    failed = [guid for guid in failed_attempt if guid not in succeeded]
    report.failed = len(failed)
    in_inbox: set[str] = set()
    for start in range(0, len(failed), KNOWN_BATCH):
        batch = set(failed[start : start + KNOWN_BATCH])
        in_inbox |= await known(batch) & batch
    report.already_known = len(in_inbox)

    # Oldest first, so handlers see the missed events roughly in the order they happened.
    for guid in reversed(failed):
        if guid in in_inbox:
            continue
        delivery_id = failed_attempt[guid]
        try:
            await gh.post("/app/hook/deliveries/{delivery_id}/attempts", {"delivery_id": delivery_id}, data=b"")
        except (HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            report.errors += 1
            log.warning("redelivery of %s (delivery %d) failed: %s", guid, delivery_id, exc)
            continue
        report.redelivered += 1
        report.redelivered_guids.append(guid)
    log.info(
        "delivery recovery since %s: scanned=%d failed=%d already_known=%d redelivered=%d errors=%d",
        since.isoformat(),
        report.scanned,
        report.failed,
        report.already_known,
        report.redelivered,
        report.errors,
    )
    return report
