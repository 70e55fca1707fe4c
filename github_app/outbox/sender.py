"""The outbox sender: brings GitHub to the latest desired state of each check run and PR comment.

One row at a time (GitHub asks integrations to send mutating requests serially), each under a lease so
that several processes can share the table; on PostgreSQL claims skip rows locked by a handler's
transaction or another sender. The sender always sends the row's LATEST payload and then records the
version it sent with a compare-and-set on its lease: a row changed meanwhile stays due and is sent
once more, and ten changes during one send still cost one more call, not ten.

Creating twice is the failure users notice (two check runs, two bot comments), so before creating
anything the sender looks for what it may already have created: a send that crashed after GitHub
answered but before the id was recorded is adopted on the next attempt, never repeated.

Writes are paced per process: a token bucket for all writes, and for new comments (GitHub's
"content-creating" requests) sliding windows per minute and per hour. A comment that would exceed
them is not waited for under the lease; its row is put back until the window opens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import orjson
from gidgethub import BadRequest
from sqlalchemy import case, func, literal, or_, select, update

from github_app.db.app_tables import OutboxItem
from github_app.db.types import utcnow
from github_app.inbox.store import ERROR_MAX_CHARS, retry_delay
from github_app.inbox.worker import worker_name
from github_app.metrics import OUTBOX_PENDING, OUTBOX_SENT
from github_app.outbox.enqueue import KIND_CHECK_RUN, KIND_PR_COMMENT
from github_app.presentation import COMMENT_MARKER, MAX_COMMENT_BYTES, MAX_OUTPUT_BYTES, truncate
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
PENDING_SAMPLE_SECONDS = 15.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class WritePacer:
    """GitHub's secondary limits, kept by this process: writes spaced by a token bucket (capacity one,
    so consecutive writes are at least 1/rate apart), and content-creating requests counted in
    sliding windows of a minute and an hour."""

    def __init__(
        self,
        writes_per_second: float,
        creates_per_minute: int,
        creates_per_hour: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if writes_per_second <= 0 or creates_per_minute <= 0 or creates_per_hour <= 0:
            raise ValueError("write and create rates must be positive")
        self._interval = 1.0 / writes_per_second
        self._windows = ((60.0, creates_per_minute), (3600.0, creates_per_hour))
        self._clock = clock
        self._sleep = sleep
        self._next_write = float("-inf")
        self._creates: deque[float] = deque()

    async def before_write(self) -> None:
        now = self._clock()
        start = max(now, self._next_write)
        # Reserved before sleeping, so that concurrent callers queue behind one another.
        self._next_write = start + self._interval
        if start > now:
            await self._sleep(start - now)

    def create_delay(self) -> float:
        """Seconds until one more content-creating request fits in every window (0: now)."""
        now = self._clock()
        longest = max(window for window, _ in self._windows)
        while self._creates and self._creates[0] <= now - longest:
            self._creates.popleft()
        wait = 0.0
        for window, limit in self._windows:
            recent = [at for at in self._creates if at > now - window]
            if len(recent) >= limit:
                wait = max(wait, recent[len(recent) - limit] + window - now)
        return wait

    def record_create(self) -> None:
        self._creates.append(self._clock())


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


class OutboxSender:
    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str | None = None,
        writes_per_second: float = 1.0,
        creates_per_minute: int = 80,
        creates_per_hour: int = 500,
        lease_seconds: float = 120.0,
        retry_base_seconds: float = 5.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.name = name or worker_name()
        self.pacer = WritePacer(writes_per_second, creates_per_minute, creates_per_hour)
        self.lease_seconds = lease_seconds
        self.retry_base_seconds = retry_base_seconds
        self.poll_seconds = poll_seconds
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
            log.info("outbox sender stopped", extra={"sender": self.name})

    async def run_until_idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - the Worker's API
        """Send what is due, also waiting for retries that fall due within `timeout`; return once
        nothing more would be due before then (tests and one-shot operator runs). Rows held back for
        longer, or all rows while GitHub is not configured, stay pending."""
        deadline = time.monotonic() + timeout
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
        await self._process(row, github)
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
            # Inside the lease, with a margin: past it another sender may claim the row.
            async with asyncio.timeout(self.lease_seconds * 0.9):
                desired = orjson.loads(row.payload)
                gh = await github.installation_client(row.installation_id)
                result = await self._deliver(gh, github.app_id, row, desired)
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if isinstance(exc, TimeoutError):
                detail = f"not sent within {self.lease_seconds * 0.9:.0f}s"
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
                "outbox send deferred: content-creation budget spent",
                extra={**fields, "seconds": round(result.seconds, 1)},
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
        if row.kind == KIND_CHECK_RUN:
            return await self._send_check_run(gh, app_id, row, desired)
        if row.kind == KIND_PR_COMMENT:
            return await self._send_comment(gh, app_id, row, desired)
        raise ValueError(f"unknown outbox kind {row.kind!r}")

    async def _send_check_run(
        self, gh: GitHubClient, app_id: int, row: _Claimed, desired: dict[str, Any]
    ) -> _Sent | _Deferred:
        repo = row.repository
        body = check_run_request(desired)
        body["head_sha"] = str(body.get("head_sha") or row.target)
        # The commit of a run cannot change; GitHub wants it only when creating.
        changes = {key: value for key, value in body.items() if key != "head_sha"}
        # A completed run never goes back to in progress (GitHub refuses it): a new run is created.
        reopening = body.get("status") not in (None, "completed")
        remote_id = row.remote_id
        if remote_id is not None and reopening and await self._is_completed(gh, repo, remote_id):
            remote_id = None
        if remote_id is not None and await self._patch(gh, f"/repos/{repo}/check-runs/{remote_id}", changes):
            return _Sent(remote_id, "updated")
        found = await self._find_check_run(
            gh, app_id, repo, body["head_sha"], str(body.get("name") or ""), body.get("external_id"), reopening
        )
        if found is not None and await self._patch(gh, f"/repos/{repo}/check-runs/{found}", changes):
            return _Sent(found, "adopted")
        await self.pacer.before_write()
        created = await gh.post(f"/repos/{repo}/check-runs", data=body)
        return _Sent(int(created["id"]), "created")

    async def _find_check_run(
        self,
        gh: GitHubClient,
        app_id: int,
        repo: str,
        sha: str,
        name: str,
        external_id: object = None,
        open_only: bool = False,
    ) -> int | None:
        """Our run of `name` on `sha`; with an external id (one run per PR on a shared head), only the
        run carrying it."""
        query = urlencode({"check_name": name, "filter": "all", "per_page": 100}, quote_via=quote)
        found = await gh.getitem(f"/repos/{repo}/commits/{sha}/check-runs?{query}")
        ours = [
            int(run["id"])
            for run in found.get("check_runs") or []
            if run.get("name") == name
            and (run.get("app") or {}).get("id") == app_id
            and (external_id is None or run.get("external_id") == external_id)
            and not (open_only and run.get("status") == "completed")
        ]
        return max(ours, default=None)

    async def _is_completed(self, gh: GitHubClient, repo: str, run_id: int) -> bool:
        try:
            run = await gh.getitem(f"/repos/{repo}/check-runs/{run_id}")
        except BadRequest as exc:
            if exc.status_code == 404:
                return False
            raise
        return bool(run.get("status") == "completed")

    async def _send_comment(
        self, gh: GitHubClient, app_id: int, row: _Claimed, desired: dict[str, Any]
    ) -> _Sent | _Deferred:
        repo, number = row.repository, row.target
        body = comment_text(desired)
        if row.remote_id is not None and await self._patch(
            gh, f"/repos/{repo}/issues/comments/{row.remote_id}", {"body": body}
        ):
            return _Sent(row.remote_id, "updated")
        # Not created yet, lost before its id was recorded, or deleted by someone: look before creating.
        found = await self._find_comment(gh, app_id, repo, number)
        if found is not None:
            comment_id, current = found
            if current == body or await self._patch(gh, f"/repos/{repo}/issues/comments/{comment_id}", {"body": body}):
                return _Sent(comment_id, "adopted")
        wait = self.pacer.create_delay()
        if wait > 0:
            return _Deferred(wait)
        await self.pacer.before_write()
        self.pacer.record_create()
        created = await gh.post(f"/repos/{repo}/issues/{number}/comments", data={"body": body})
        return _Sent(int(created["id"]), "created")

    async def _find_comment(self, gh: GitHubClient, app_id: int, repo: str, number: str) -> tuple[int, str] | None:
        async for comment in gh.getiter(f"/repos/{repo}/issues/{number}/comments?per_page=100"):
            text = comment.get("body") or ""
            if COMMENT_MARKER in text and is_own_comment(comment, app_id):
                return int(comment["id"]), text
        return None

    async def _patch(self, gh: GitHubClient, url: str, data: dict[str, Any]) -> bool:
        """False when the object is gone (a user deleted the comment): the caller creates it again."""
        await self.pacer.before_write()
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
        due = (
            select(T.id)
            .where(
                T.sent_version < T.version,
                T.next_attempt_at <= now,
                or_(T.lease_owner.is_(None), T.lease_expires_at < now),
            )
            .order_by(T.next_attempt_at, T.id)
            .limit(1)
        )
        if not self.runtime.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(T)
            .where(T.id.in_(due.scalar_subquery()))
            .values(lease_owner=self.name, lease_expires_at=now + timedelta(seconds=self.lease_seconds))
            .returning(
                T.id, T.installation_id, T.repository, T.kind, T.target, T.payload, T.version, T.remote_id, T.attempts
            )
        )
        async with self.runtime.engine.begin() as conn:
            found = (await conn.execute(stmt)).first()
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


def check_run_request(desired: dict[str, Any]) -> dict[str, Any]:
    """The desired check run as GitHub accepts it: output texts within GitHub's size limit."""
    body = dict(desired)
    output = body.get("output")
    if isinstance(output, dict):
        output = dict(output)
        for key in ("summary", "text"):
            if isinstance(output.get(key), str):
                output[key] = truncate(output[key], MAX_OUTPUT_BYTES)
        body["output"] = output
    return body


def comment_text(desired: dict[str, Any]) -> str:
    """The comment's body, always carrying the marker by which the app finds its comment again."""
    text = str(desired.get("body") or "")
    if COMMENT_MARKER not in text:
        text = f"{COMMENT_MARKER}\n{text}"
    text = truncate(text, MAX_COMMENT_BYTES)
    if COMMENT_MARKER not in text:  # the marker sat past the cut
        text = truncate(f"{COMMENT_MARKER}\n{text}", MAX_COMMENT_BYTES)
    return text


def is_own_comment(comment: dict[str, Any], app_id: int) -> bool:
    """Written by the app: a bot account, and, where GitHub says which app acted, this one. A human
    quoting the marker is never adopted (the app would then edit a person's comment)."""
    if (comment.get("user") or {}).get("type") != "Bot":
        return False
    via = comment.get("performed_via_github_app")
    return not via or via.get("id") == app_id


__all__ = ["PARKED", "OutboxSender", "WritePacer", "check_run_request", "comment_text", "is_own_comment"]
