"""The outbox sender: brings GitHub to the latest desired state of each check run and PR comment.

One row at a time (GitHub asks integrations to send mutating requests serially), each under a lease so
that several processes can share the table; on PostgreSQL claims skip rows locked by a handler's
transaction or another sender. The sender always sends the row's LATEST payload and then records the
version it sent with a compare-and-set on its lease: a row changed meanwhile stays due and is sent
once more, and ten changes during one send still cost one more call, not ten.

Creating twice is the failure users notice (two check runs, two bot comments), so before creating
anything the sender looks for what it may already have created: a send that crashed after GitHub
answered but before the id was recorded is adopted on the next attempt, never repeated. A create
whose answer is lost (a 5xx, no response: GitHub may have made the object all the same) is never
repeated by the client either; the sender looks for what it made and adopts it (`remote.py` says how
each kind of object is marked and found).

Writes are paced for the whole app, through the database (`pace.py`): one write at a time per
interval, and for new comments (GitHub's "content-creating" requests) windows per minute and per hour,
shared by every sender of an installation in every process. A comment that would exceed them is not
waited for under the lease; its row is put back until the window opens. A rate-limit answer is not
waited out under the lease either: its wait is written to the shared pace, which every sender then
keeps, and the row is put back until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from gidgethub import BadRequest
from sqlalchemy import Update, bindparam, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from github_app.db.app_tables import OutboxItem
from github_app.db.types import utcnow
from github_app.github.client import AnswerLost, RateLimited, rate_limits_to_caller
from github_app.inbox.store import ERROR_MAX_CHARS, retry_delay
from github_app.leases import Heartbeat, claim_statement, extend_leases
from github_app.metrics import OUTBOX_PENDING, OUTBOX_SENT
from github_app.names import worker_name
from github_app.outbox.pace import PENALTY, Limits, SharedPace, installation_scope
from github_app.outbox.remote import RemoteKind, remote_kinds
from github_app.runtime import Runtime
from github_app.wakeup import sleep_until_woken

if TYPE_CHECKING:
    from github_app.github.client import GitHubApp, GitHubClient

log = logging.getLogger(__name__)

T = OutboxItem
# A row whose latest version is on GitHub waits here, so that the due index (next_attempt_at) leads
# straight to the rows with work to do, however many targets were ever shown.
PARKED = datetime(9999, 1, 1)
# From this many failed attempts in a row a target is logged at error level: someone should look.
LOUD_AFTER_ATTEMPTS = 5
# How far before a create whose answer was lost the search for what it made begins: GitHub's clock
# and ours differ.
LOOKBACK = timedelta(minutes=5)
PENDING_SAMPLE_SECONDS = 15.0


@dataclass(frozen=True)
class _Claimed:
    id: int
    installation_id: int
    repository: str
    kind: str
    target: str
    payload: str
    version: int
    remote_id: int | None
    attempts: int


@dataclass(frozen=True)
class _Sent:
    remote_id: int
    outcome: str  # created, adopted or updated


@dataclass(frozen=True)
class _Deferred:
    seconds: float
    reason: str


class _Hold(Exception):
    """The shared pace says not now."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


SEND_TIMEOUT_SECONDS = 100.0


async def renew(conn: AsyncConnection, owner: str, ids: Collection[str], lease_seconds: float) -> int:
    """The heartbeat of the rows `owner` is sending."""
    return await extend_leases(conn, T, T.id, [int(i) for i in ids], owner, lease_seconds)


def _claim_statement(skip_locked: bool) -> Update:
    now = bindparam("now", type_=T.next_attempt_at.type)
    return claim_statement(
        T,
        T.id,
        (T.sent_version < T.version)
        & (T.next_attempt_at <= now)
        & or_(T.lease_owner.is_(None), T.lease_expires_at < now),
        (T.next_attempt_at, T.id),
        1,
        (T.id, T.installation_id, T.repository, T.kind, T.target, T.payload, T.version, T.remote_id, T.attempts),
        skip_locked=skip_locked,
    )


_CLAIM = {skip: _claim_statement(skip) for skip in (True, False)}


class OutboxSender:
    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str | None = None,
        writes_per_second: float = 1.0,
        creates_per_minute: int = 80,
        creates_per_hour: int = 500,
        lease_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
        send_timeout_seconds: float = SEND_TIMEOUT_SECONDS,
        retry_base_seconds: float = 5.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.name = name or worker_name()
        self.pace = SharedPace(runtime.engine, Limits.of(writes_per_second, creates_per_minute, creates_per_hour))
        # A short lease, renewed while the row is being sent: a killed sender's row is sent by another
        # within seconds, and a slow send (GitHub taking its time, a paced wait) keeps its row.
        settings = runtime.settings
        self.lease_seconds = lease_seconds or settings.worker_lease_seconds
        self.send_timeout_seconds = send_timeout_seconds
        self.heartbeat = Heartbeat(
            runtime.engine,
            renew,
            self.name,
            self.lease_seconds,
            heartbeat_seconds or min(settings.worker_heartbeat_seconds, self.lease_seconds / 3),
            "outbox",
        )
        self.retry_base_seconds = retry_base_seconds
        self.poll_seconds = poll_seconds
        slug = getattr(runtime.settings, "github_app_slug", None)
        self.kinds = remote_kinds(f"{slug}[bot]" if slug else None)
        self._wake = asyncio.Event()
        self._said_unconfigured = False
        self._pending_sampled_at = float("-inf")

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; the row being sent is finished first."""
        log.info("outbox sender started", extra={"sender": self.name})
        stop_waiter = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if not await self._step():
                    await self._sleep(stop_waiter)
        finally:
            stop_waiter.cancel()
            await self.heartbeat.close()
            log.info("outbox sender stopped", extra={"sender": self.name})

    async def run_until_idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - the Worker's API
        """Send what is due, also waiting for retries that fall due within `timeout`; return once
        nothing more would be due before then (tests and one-shot operator runs). Rows held back for
        longer, or all rows while GitHub is not configured, stay pending."""
        deadline = time.monotonic() + timeout
        try:
            await self._drain(deadline)
        finally:
            await self.heartbeat.close()

    async def _drain(self, deadline: float) -> None:
        while True:
            if await self._step():
                if time.monotonic() >= deadline:
                    raise TimeoutError("outbox not drained in time")
                continue
            if self.runtime.github is None:
                return
            wait = await self._seconds_until_due()
            if wait is None or time.monotonic() + wait >= deadline:
                return
            await asyncio.sleep(min(max(wait, 0.01), self.poll_seconds))

    # --- the loop ----------------------------------------------------------------------------------

    async def _sleep(self, stop_waiter: asyncio.Task[bool]) -> None:
        await sleep_until_woken(self._wake, stop_waiter, self.poll_seconds)

    async def _step(self) -> bool:
        """Send one due row. False when there was none (or none can be sent now)."""
        github = self._github()
        if github is None:
            return False
        try:
            row = await self._claim()
        except Exception as exc:  # the database may be away for a while; say so every poll
            log.error("outbox sender cannot claim rows", extra={"sender": self.name, "error": repr(exc)})
            return False
        if row is None:
            await self._sample_pending()
            return False
        self.heartbeat.hold(str(row.id))
        try:
            await self._process(row, github)
        finally:
            self.heartbeat.drop(str(row.id))
        return True

    def _github(self) -> GitHubApp | None:
        github: GitHubApp | None = self.runtime.github
        if github is not None:
            self._said_unconfigured = False
        elif not self._said_unconfigured:
            log.warning(
                "GitHub App not configured (no app id or private key): outbox rows stay pending",
                extra={"sender": self.name},
            )
            self._said_unconfigured = True
        return github

    async def _process(self, row: _Claimed, github: GitHubApp) -> None:
        fields = {
            "sender": self.name,
            "outbox_id": row.id,
            "kind": row.kind,
            "repository": row.repository,
            "target": row.target,
            "version": row.version,
        }
        started = time.monotonic()
        try:
            # The heartbeat keeps the lease meanwhile; this bounds the send itself.
            async with asyncio.timeout(self.send_timeout_seconds):
                desired = orjson.loads(row.payload)
                gh = await github.installation_client(row.installation_id)
                with rate_limits_to_caller():
                    result = await self._deliver(gh, github.app_id, row, desired)
        except _Hold as held:
            if held.reason == PENALTY:  # this process's handlers keep the silence too
                github.hold_installation(row.installation_id, held.seconds)
            result = _Deferred(held.seconds, held.reason)
        except RateLimited as limited:
            # Told to this sender; kept by every sender and, through them, every process.
            await self._hold_off(row, limited.seconds, fields)
            result = _Deferred(limited.seconds, f"GitHub rate limit ({limited.reason})")
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if isinstance(exc, TimeoutError):
                detail = f"not sent within {self.send_timeout_seconds:.0f}s"
            status = getattr(exc, "status_code", None)
            if status is not None:
                detail = f"GitHub answered {int(status)}: {detail}"
            OUTBOX_SENT.labels(row.kind, "failed").inc()
            attempts = row.attempts + 1
            level = logging.ERROR if attempts >= LOUD_AFTER_ATTEMPTS else logging.WARNING
            log.log(level, "outbox send failed; will retry", extra={**fields, "attempt": attempts, "error": detail})
            await self._record(self._failed(row, detail), fields)
            return
        if isinstance(result, _Deferred):
            OUTBOX_SENT.labels(row.kind, "deferred").inc()
            log.info(
                "outbox send deferred",
                extra={**fields, "seconds": round(result.seconds, 1), "reason": result.reason},
            )
            await self._record(self._deferred(row, result.seconds), fields)
            return
        OUTBOX_SENT.labels(row.kind, result.outcome).inc()
        log.info(
            "outbox sent",
            extra={
                **fields,
                "outcome": result.outcome,
                "remote_id": result.remote_id,
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        await self._record_sent(row, result, fields)

    # --- GitHub ------------------------------------------------------------------------------------

    async def _deliver(
        self, gh: GitHubClient, app_id: int, row: _Claimed, desired: dict[str, Any]
    ) -> _Sent | _Deferred:
        kind = self.kinds.get(row.kind)
        if kind is None:
            raise ValueError(f"unknown outbox kind {row.kind!r}")
        repo = row.repository
        body = kind.request(row.target, desired)
        stale = getattr(kind, "stale", None)
        if stale is not None:
            # Objects that are replaced rather than edited (a reaction): the old one goes first.
            for path in await stale(gh, repo, row.target, body):
                await self._delete(gh, row, path)
        if (
            row.remote_id is not None
            and await kind.updatable(gh, repo, row.remote_id, body)
            and await self._patch(gh, row, kind.update_path(repo, row.remote_id), kind.changes(body))
        ):
            return _Sent(row.remote_id, "updated")
        if kind.content_creating:
            # A create the budget would refuse anyway waits before its lookup costs a request.
            ahead = await self.pace.create_wait(installation_scope(row.installation_id))
            if ahead.defer is not None:
                raise _Hold(ahead.defer, ahead.reason)
        # Not created yet, created by an attempt whose answer was lost, or deleted by someone: look
        # before creating.
        adopted = await self._adopt(gh, app_id, row, kind, body)
        if adopted is not None:
            return adopted
        await self._paced(row, create=kind.content_creating)
        started = utcnow()
        try:
            created = await gh.create(kind.create_path(repo, row.target, body), body)
        except AnswerLost:
            # GitHub may have made it all the same: what it made is adopted, never made twice. Not
            # found: the row fails and its next attempt looks again before creating.
            adopted = await self._adopt(gh, app_id, row, kind, body, since=started - LOOKBACK)
            if adopted is None:
                raise
            return _Sent(adopted.remote_id, "recovered")
        return _Sent(int(created["id"]), "created")

    async def _adopt(
        self,
        gh: GitHubClient,
        app_id: int,
        row: _Claimed,
        kind: RemoteKind,
        body: dict[str, Any],
        since: datetime | None = None,
    ) -> _Sent | None:
        found = await kind.find(gh, app_id, row.repository, row.target, body, since)
        if found is None:
            return None
        if found.current or await self._patch(
            gh, row, kind.update_path(row.repository, found.remote_id), kind.changes(body)
        ):
            return _Sent(found.remote_id, "adopted")
        return None

    async def _paced(self, row: _Claimed, *, create: bool) -> None:
        """Wait for this write's slot in the app's shared pace; _Hold when it is not to be sent now."""
        decided = await self.pace.before_write(installation_scope(row.installation_id), create=create)
        if decided.defer is not None:
            raise _Hold(decided.defer, decided.reason)

    async def _hold_off(self, row: _Claimed, seconds: float, fields: dict[str, Any]) -> None:
        try:
            await self.pace.hold_off(installation_scope(row.installation_id), seconds)
        except Exception as exc:  # this sender still defers the row; the others learn of it from GitHub
            log.error("cannot share a rate-limit wait", extra={**fields, "error": repr(exc)})

    async def _delete(self, gh: GitHubClient, row: _Claimed, url: str) -> None:
        await self._paced(row, create=False)
        try:
            await gh.delete(url)
        except BadRequest as exc:
            if exc.status_code != 404:  # already gone is what was wanted
                raise

    async def _patch(self, gh: GitHubClient, row: _Claimed, url: str, data: dict[str, Any]) -> bool:
        """False when the object is gone (a user deleted the comment): the caller creates it again."""
        await self._paced(row, create=False)
        try:
            await gh.patch(url, data=data)
        except BadRequest as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    # --- the table ---------------------------------------------------------------------------------

    async def _claim(self) -> _Claimed | None:
        now = utcnow()
        params = {"now": now, "owner": self.name, "until": now + timedelta(seconds=self.lease_seconds)}
        async with self.runtime.engine.begin() as conn:
            found = (await conn.execute(_CLAIM[not self.runtime.is_sqlite], params)).first()
        return _Claimed(*found) if found is not None else None

    async def _record_sent(self, row: _Claimed, sent: _Sent, fields: dict[str, Any]) -> None:
        parked = literal(PARKED, T.next_attempt_at.type)
        mine = (
            update(T)
            .where(T.id == row.id, T.lease_owner == self.name)
            .values(
                # Compare-and-set on the lease: exactly the version that was sent. A row bumped during
                # the send keeps its newer version due (next_attempt_at as the handler set it).
                sent_version=row.version,
                remote_id=sent.remote_id,
                sent_at=utcnow(),
                attempts=0,
                last_error=None,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=case((T.version > row.version, T.next_attempt_at), else_=parked),
            )
        )
        # Our lease ran out during the send and another sender holds the row: still leave it the id,
        # so that it updates what was just created instead of looking for it.
        orphan = update(T).where(T.id == row.id, T.remote_id.is_(None)).values(remote_id=sent.remote_id)
        try:
            async with self.runtime.engine.begin() as conn:
                if not (await conn.execute(mine)).rowcount:
                    log.warning("outbox lease lost during send", extra=fields)
                    await conn.execute(orphan)
        except Exception as exc:  # the lease expires and the row is sent again, adopting what exists
            log.error("cannot record outbox send", extra={**fields, "error": repr(exc)})

    def _failed(self, row: _Claimed, error: str) -> Any:
        delay = retry_delay(row.attempts + 1, self.retry_base_seconds)
        return (
            update(T)
            .where(T.id == row.id, T.lease_owner == self.name)
            .values(
                attempts=T.attempts + 1,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
                last_error=error[-ERROR_MAX_CHARS:],
                lease_owner=None,
                lease_expires_at=None,
            )
        )

    def _deferred(self, row: _Claimed, seconds: float) -> Any:
        # Not a failure: the attempt count and the last error stay as they were.
        return (
            update(T)
            .where(T.id == row.id, T.lease_owner == self.name)
            .values(next_attempt_at=utcnow() + timedelta(seconds=seconds), lease_owner=None, lease_expires_at=None)
        )

    async def _record(self, stmt: Any, fields: dict[str, Any]) -> None:
        try:
            async with self.runtime.engine.begin() as conn:
                await conn.execute(stmt)
        except Exception as exc:  # the lease expires and the row comes back: nothing is lost
            log.error("cannot record outbox result", extra={**fields, "error": repr(exc)})

    async def _seconds_until_due(self) -> float | None:
        """When the next pending row can be claimed (a row leased by another sender: when its lease
        ends); None when nothing is pending."""
        due_at = case((T.lease_expires_at > T.next_attempt_at, T.lease_expires_at), else_=T.next_attempt_at)
        stmt = select(func.min(due_at)).where(T.sent_version < T.version, T.next_attempt_at < PARKED)
        async with self.runtime.engine.connect() as conn:
            earliest = (await conn.execute(stmt)).scalar()
        if earliest is None:
            return None
        return max(0.0, (earliest - utcnow()).total_seconds())

    async def _sample_pending(self) -> None:
        if time.monotonic() - self._pending_sampled_at < PENDING_SAMPLE_SECONDS:
            return
        self._pending_sampled_at = time.monotonic()
        stmt = select(func.count()).select_from(T).where(T.sent_version < T.version, T.next_attempt_at < PARKED)
        try:
            async with self.runtime.engine.connect() as conn:
                OUTBOX_PENDING.set((await conn.execute(stmt)).scalar() or 0)
        except Exception as exc:
            log.warning("cannot sample outbox depth", extra={"error": repr(exc)})


__all__ = ["PARKED", "OutboxSender"]
