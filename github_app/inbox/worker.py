"""The worker: claims inbox rows, dispatches them to the handlers, completes or reschedules them.

Exactly once: a row is marked done in the same transaction as everything its handlers wrote, and only
if this worker still holds its lease (checked under a row lock). The lease is short and renewed by the
worker's heartbeat while the delivery is in hand; a worker killed at any moment leaves its transaction
uncommitted and its lease to run out within seconds; another worker then claims the row again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections import deque
from collections.abc import Callable

import orjson
from gidgethub import routing, sansio

from github_app.db import wakes
from github_app.db.app_tables import InboxState
from github_app.db.types import utcnow
from github_app.github.client import retry_deadline
from github_app.handling import HandlerContext, PermanentFailure
from github_app.inbox import store
from github_app.inbox.store import Claimed
from github_app.leases import Heartbeat
from github_app.metrics import DELIVERIES_PROCESSED, HANDLER_FAILURES, LOCK_CONFLICTS, PROCESSING_LATENCY
from github_app.names import worker_name
from github_app.runtime import Runtime
from github_app.wakeup import sleep_until_woken
from github_app.webhook import event_label

log = logging.getLogger(__name__)

# Deliveries stored per second above which the worker steps aside for the ingress.
BURST_DELIVERIES_PER_SECOND = 500
# The part of a handler's deadline that GitHub's retry waits may use; the rest is for the request that
# follows the last wait and for the commit.
GITHUB_SHARE_OF_DEADLINE = 0.8
# A deadlock or serialization failure says nothing about the delivery: its transaction is run again at
# once (after a few milliseconds, so the two sides do not collide again), this many times at most before
# it counts as an ordinary failed attempt.
LOCK_CONFLICT_RETRIES = 10
# PostgreSQL's SQLSTATEs for deadlock_detected and serialization_failure.
LOCK_CONFLICT_STATES = frozenset({"40P01", "40001"})


def is_lock_conflict(exc: BaseException) -> bool:
    """A transaction the database rolled back to break a lock cycle (or a serialization conflict)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if state in LOCK_CONFLICT_STATES:
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        router: routing.Router,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        on_processed: Callable[[str, str, frozenset[str]], None] | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.router = router
        self.name = name or worker_name()
        # SQLite has a single writer: parallel handlers would only queue on its lock.
        self.concurrency = 1 if runtime.is_sqlite else (concurrency or settings.worker_concurrency)
        self.lease_seconds = settings.worker_lease_seconds
        # The lease is kept alive by the heartbeat, so the deadline is a bound on the work itself.
        self.handler_deadline = settings.worker_handler_timeout_seconds
        self.heartbeat = Heartbeat(
            runtime.engine,
            store.renew,
            self.name,
            self.lease_seconds,
            settings.worker_heartbeat_seconds,
            "delivery",
        )
        self.max_attempts = settings.worker_max_attempts
        self.retry_base = settings.worker_retry_base_seconds
        self.poll_seconds = settings.worker_poll_seconds
        self.on_processed = on_processed
        self._wake = asyncio.Event()
        self._arrivals: deque[tuple[float, int]] = deque()
        self._arrived = 0
        self._burst_since: float | None = None
        self.burst_defer_seconds = settings.worker_burst_defer_seconds
        self._inflight: set[asyncio.Task[None]] = set()
        self._draining = False
        # When a claim found fewer due rows than it asked for: the inbox holds nothing more for this worker
        # until a delivery is announced, or a poll interval has passed (a retry falls due, a dead worker's
        # lease runs out). None: there may be more. Without it every finished delivery ran one more claim,
        # most of them empty.
        self._empty_since: float | None = None
        self._announced = 0

    def wake(self, stored: int = 1) -> None:
        """`stored` new deliveries are in the inbox (the ingress's NOTIFY, or the in-process writer)."""
        now = time.monotonic()
        self._arrivals.append((now, stored))
        self._arrived += stored
        self._trim(now)
        self._empty_since = None
        self._announced += 1
        self._wake.set()

    def _trim(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] < now - 1.0:
            self._arrived -= self._arrivals.popleft()[1]

    def deferring(self) -> bool:
        """During a burst (many group-commit batches a second) the ingress gets the CPU and the
        database: answering GitHub within its 10 s matters more than handling a delivery a few seconds
        sooner. The deferral is bounded, so a sustained flood still gets processed."""
        now = time.monotonic()
        self._trim(now)
        if self._arrived < BURST_DELIVERIES_PER_SECOND or self.burst_defer_seconds <= 0:
            self._burst_since = None
            return False
        if self._burst_since is None:
            self._burst_since = now
        return now - self._burst_since < self.burst_defer_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; then finish what is in flight and return."""
        log.info("worker started", extra={"worker": self.name, "concurrency": self.concurrency})
        stop_waiter = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if self.deferring():
                    await asyncio.wait({stop_waiter}, timeout=0.25)
                    continue
                claimed = await self._claim_some() if self._worth_claiming() else 0
                if claimed == 0 or len(self._inflight) >= self.concurrency:
                    await self._sleep(stop_waiter)
        finally:
            stop_waiter.cancel()
            self._draining = True
            if self._inflight:
                log.info("worker finishing %d in-flight deliveries", len(self._inflight))
                await asyncio.gather(*self._inflight, return_exceptions=True)
            await self.heartbeat.close()
            log.info("worker stopped", extra={"worker": self.name})

    async def run_until_idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a bound, not a cancel scope
        """Process everything due now, then return (tests and one-shot operator runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            claimed = await self._claim_some()
            if self._inflight:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            elif claimed == 0:
                await self.heartbeat.close()
                return
        raise TimeoutError("inbox not drained in time")

    async def _sleep(self, stop_waiter: asyncio.Task[bool]) -> None:
        await sleep_until_woken(self._wake, stop_waiter, self.poll_seconds)

    def _worth_claiming(self) -> bool:
        """Claim in batches: when half the slots are free, or none is busy. One claim per finished
        delivery cost a statement each for one row."""
        free = self.concurrency - len(self._inflight)
        maybe_more = self._empty_since is None or time.monotonic() - self._empty_since >= self.poll_seconds
        return maybe_more and free > 0 and (not self._inflight or free * 2 >= self.concurrency)

    async def _claim_some(self) -> int:
        free = self.concurrency - len(self._inflight)
        if free <= 0 or self._draining:
            return 0
        announced = self._announced
        try:
            async with self.runtime.engine.begin() as conn:
                rows = await store.claim(
                    conn, self.name, free, self.lease_seconds, skip_locked=not self.runtime.is_sqlite
                )
        except Exception as exc:  # the database may be down for a while; keep trying, say so once a poll
            log.error("worker cannot claim deliveries", extra={"error": repr(exc)})
            return 0
        if len(rows) < free and announced == self._announced:
            self._empty_since = time.monotonic()
        self.heartbeat.hold(*(row.delivery_id for row in rows))
        for row in rows:
            task = asyncio.create_task(self._process(row), name=f"delivery-{row.delivery_id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _process(self, row: Claimed) -> None:
        try:
            await self._process_held(row)
        finally:
            self.heartbeat.drop(row.delivery_id)

    async def _process_held(self, row: Claimed) -> None:
        started = time.monotonic()
        fields = {
            "delivery_id": row.delivery_id,
            "event": row.event,
            "action": row.action,
            "repository": row.repository,
            "attempt": row.attempts,
        }
        if row.attempts > self.max_attempts:
            # Claimed again after its worker died mid-run on the last allowed attempt.
            await self._fail(row, "worker lost while processing; attempts exhausted", permanent=True)
            return
        asked: frozenset[str] = frozenset()
        try:
            event = sansio.Event(orjson.loads(row.payload), event=row.event, delivery_id=row.delivery_id)
            async with asyncio.timeout(self.handler_deadline):
                for conflicts in range(LOCK_CONFLICT_RETRIES + 1):
                    try:
                        handled = await self._handle(row, event)
                        if handled is None:
                            DELIVERIES_PROCESSED.labels(event_label(row.event), "lost_lease").inc()
                            log.warning("delivery lease lost; another worker has it", extra=fields)
                            return
                        asked = handled
                        break
                    except Exception as exc:
                        if not is_lock_conflict(exc) or conflicts >= LOCK_CONFLICT_RETRIES:
                            raise
                        LOCK_CONFLICTS.labels(event_label(row.event)).inc()
                        log.info(
                            "delivery hit a lock conflict; running it again",
                            extra={**fields, "conflicts": conflicts + 1},
                        )
                        await asyncio.sleep(random.uniform(0.001, 0.02) * (conflicts + 1))
        except Exception as exc:
            HANDLER_FAILURES.labels(event_label(row.event)).inc()
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if isinstance(exc, TimeoutError):
                detail = f"handler did not finish within {self.handler_deadline:.0f}s"
            log.warning(
                "delivery failed",
                extra={**fields, "error": detail},
                exc_info=not isinstance(exc, PermanentFailure | TimeoutError),
            )
            await self._fail(row, detail, permanent=isinstance(exc, PermanentFailure | orjson.JSONDecodeError))
            return
        latency = (utcnow() - row.received_at).total_seconds()
        PROCESSING_LATENCY.observe(max(0.0, latency))
        DELIVERIES_PROCESSED.labels(event_label(row.event), "done").inc()
        log.info(
            "delivery processed",
            extra={**fields, "outcome": "done", "ms": round((time.monotonic() - started) * 1000, 1)},
        )
        if self.on_processed:
            self.on_processed(row.delivery_id, InboxState.DONE, asked)

    async def _handle(self, row: Claimed, event: sansio.Event) -> frozenset[str] | None:
        """The delivery's unit of work, in one transaction: the background loops it needs woken once
        committed (`db/wakes.py`), or None when the row is no longer ours."""
        async with self.runtime.sessionmaker() as session, session.begin():
            if not await store.hold(session, row.delivery_id, self.name, lock=not self.runtime.is_sqlite):
                return None
            # GitHub's retry waits end in time for the last request and the commit.
            with retry_deadline(self.handler_deadline * GITHUB_SHARE_OF_DEADLINE):
                await self.router.dispatch(event, HandlerContext(session, row.delivery_id, self.runtime))
            await store.mark_done(session, row.delivery_id)
        return wakes.asked(session)

    async def _fail(self, row: Claimed, error: str, *, permanent: bool) -> None:
        attempts = self.max_attempts if permanent else row.attempts
        try:
            async with self.runtime.engine.begin() as conn:
                state = await store.mark_failed(
                    conn,
                    row.delivery_id,
                    self.name,
                    error,
                    attempts=attempts,
                    max_attempts=self.max_attempts,
                    retry_base_seconds=self.retry_base,
                )
        except Exception as exc:  # the lease will expire and the row comes back: nothing is lost
            log.error("cannot record delivery failure", extra={"delivery_id": row.delivery_id, "error": repr(exc)})
            return
        outcome = "dead" if state == InboxState.DEAD else "retry"
        DELIVERIES_PROCESSED.labels(event_label(row.event), outcome).inc()
        log.info(
            "delivery processed",
            extra={
                "delivery_id": row.delivery_id,
                "event": row.event,
                "action": row.action,
                "repository": row.repository,
                "outcome": outcome,
            },
        )
        if self.on_processed:
            self.on_processed(row.delivery_id, state, frozenset())
