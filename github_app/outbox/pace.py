"""The pace of writes to GitHub, one for the whole app however many processes and machines send.

GitHub's secondary limits count per installation: about one write a second, at most 80
content-creating requests a minute and 500 an hour, and after a rate-limit answer silence until its
`Retry-After` (or `x-ratelimit-reset`) for every client of that installation. Each process pacing
itself lets N processes write N times too fast, and a penalty told to one process is ignored by the
others. So the pace lives in one database row per installation (`github_pace`), read and updated under
its row lock in a short transaction of its own (on SQLite, whose writers queue on one lock, the same
statements serialize just as well): a sender reserves its write's slot there, then waits for the slot
outside the transaction.

`plan` is the arithmetic, without I/O; `SharedPace` keeps its state in the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from github_app.db.app_tables import GitHubPace
from github_app.db.types import utcnow

T = GitHubPace
PENALTY = "GitHub asked for silence (Retry-After or rate-limit reset)"
BUDGET = "content-creation budget spent"
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    write_interval: float  # seconds between two writes
    windows: tuple[tuple[float, int], ...]  # (seconds, content-creating requests allowed in them)

    @classmethod
    def of(cls, writes_per_second: float, creates_per_minute: int, creates_per_hour: int) -> Limits:
        if writes_per_second <= 0 or creates_per_minute <= 0 or creates_per_hour <= 0:
            raise ValueError("write and create rates must be positive")
        return cls(1.0 / writes_per_second, ((60.0, creates_per_minute), (3600.0, creates_per_hour)))


@dataclass(frozen=True)
class PaceState:
    next_write_at: float = 0.0
    not_before: float = 0.0
    creates: tuple[float, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Either wait `wait` seconds and then send (the slot is reserved), or `defer`: send nothing now,
    try again that many seconds later (nothing reserved)."""

    wait: float = 0.0
    defer: float | None = None
    reason: str = ""  # why deferred
    at: float = 0.0  # the reserved slot, on the clock `plan` was given


def plan(state: PaceState, limits: Limits, now: float, *, create: bool) -> tuple[PaceState, Plan]:
    """The next write's slot, and the state that reserves it."""
    if state.not_before > now:
        return state, Plan(defer=state.not_before - now, reason=PENALTY)
    longest = max(window for window, _ in limits.windows)
    creates = tuple(at for at in state.creates if at > now - longest)
    state = replace(state, creates=creates)
    if create:
        delay = create_delay(creates, limits, now)
        if delay > 0:
            return state, Plan(defer=delay, reason=BUDGET)
    start = max(now, state.next_write_at)
    reserved = replace(
        state, next_write_at=start + limits.write_interval, creates=creates + ((start,) if create else ())
    )
    return reserved, Plan(wait=start - now, at=start)


def create_delay(creates: tuple[float, ...], limits: Limits, now: float) -> float:
    """Seconds until one more content-creating request fits in every window (0: now)."""
    wait = 0.0
    for window, limit in limits.windows:
        recent = [at for at in creates if at > now - window]
        if len(recent) >= limit:
            wait = max(wait, sorted(recent)[len(recent) - limit] + window - now)
    return wait


class SharedPace:
    """The pace of one app's writes, in the database. Scopes are installations."""

    def __init__(
        self, engine: AsyncEngine, limits: Limits, *, clock: Clock = time.time, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.engine = engine
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._postgres = engine.dialect.name == "postgresql"

    async def before_write(self, scope: str, *, create: bool) -> Plan:
        """Reserve the next write of `scope` and wait for its slot, then send; or, when the plan says
        `defer`, send nothing now (a rate-limit penalty, or the creation budget is spent)."""
        async with self.engine.begin() as conn:
            query = select(T.next_write_at, T.not_before, T.recent_creates).where(T.scope == scope)
            found = None
            if self._postgres:
                # The row exists after a scope's first write: lock it and read it in one statement.
                found = (await conn.execute(query.with_for_update())).first()
                query = query.with_for_update()
            if found is None:
                # On SQLite the write comes first: it takes the database's write lock before the row is read.
                insert = self._insert().values(scope=scope, updated_at=utcnow())
                await conn.execute(insert.on_conflict_do_nothing(index_elements=[T.scope]))
                found = (await conn.execute(query)).one()
            next_write_at, not_before, recent = found
            state = PaceState(next_write_at, not_before, tuple(orjson.loads(recent)))
            now = self._clock()
            reserved, decided = plan(state, self.limits, now, create=create)
            if reserved != state:
                await conn.execute(
                    update(T)
                    .where(T.scope == scope)
                    .values(
                        next_write_at=reserved.next_write_at,
                        recent_creates=orjson.dumps(list(reserved.creates)).decode(),
                        updated_at=utcnow(),
                    )
                )
        # Until the slot itself: the commit above took time of its own.
        wait = decided.at - self._clock()
        if decided.defer is None and wait > 0:
            await self._sleep(wait)
        return decided

    async def create_wait(self, scope: str) -> Plan:
        """Whether a content-creating write of `scope` would be deferred now, without reserving anything
        (a look before the work that precedes a create)."""
        query = select(T.next_write_at, T.not_before, T.recent_creates).where(T.scope == scope)
        async with self.engine.connect() as conn:
            found = (await conn.execute(query)).first()
        if found is None:
            return Plan()
        state = PaceState(found[0], found[1], tuple(orjson.loads(found[2])))
        return plan(state, self.limits, self._clock(), create=True)[1]

    async def hold_off(self, scope: str, seconds: float) -> None:
        """GitHub told one sender to wait `seconds`: every sender of `scope` waits until then."""
        until = self._clock() + seconds
        async with self.engine.begin() as conn:
            insert = self._insert().values(scope=scope, not_before=until, updated_at=utcnow())
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[T.scope],
                    set_={"not_before": until, "updated_at": utcnow()},
                    where=T.not_before < until,
                )
            )

    def _insert(self) -> Any:
        return postgresql.insert(T) if self._postgres else sqlite.insert(T)


def installation_scope(installation_id: int) -> str:
    return f"installation:{installation_id}"


__all__ = [
    "BUDGET",
    "PENALTY",
    "Limits",
    "PaceState",
    "Plan",
    "SharedPace",
    "create_delay",
    "installation_scope",
    "plan",
]
