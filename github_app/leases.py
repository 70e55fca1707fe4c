"""The heartbeat that keeps a live holder's leases (inbox deliveries, escrow releases, outbox rows being
sent) from running out.

Leases are short, so that the work of a process that died (kill -9, a lost machine) is taken over
within seconds; the heartbeat renews them while their holder is alive, so that slow work (a release
waiting for its confirmations, a handler waiting on GitHub) is never taken away from a live holder.
Renewing never takes a lease back: only rows this owner still holds are extended, and a holder whose
lease was taken over finds out at its next compare-and-set and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from github_app.db.types import utcnow

log = logging.getLogger(__name__)

Renew = Callable[[AsyncConnection, str, Collection[str], float], Awaitable[int]]


def claim_statement(
    table: Any,
    key: Any,
    due: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: Any,
    returning: Sequence[Any],
    *,
    skip_locked: bool,
    **values: Any,
) -> Update:
    """UPDATE `table`: up to `limit` rows meeting `due`, in `order_by`, leased to the parameter `owner`
    until the parameter `until` (and set `values`), RETURNING `returning`. Built once per loop with
    parameters (`due` names its own, such as the time): building the statement and its cache key on each
    claim cost more CPU than running it. With `skip_locked`, rows another claimer is taking are passed
    over instead of waited for."""
    chosen = select(key).where(due).order_by(*order_by).limit(limit)
    if skip_locked:
        chosen = chosen.with_for_update(skip_locked=True)
    return (
        update(table)
        .where(key.in_(chosen.scalar_subquery()))
        .values(
            lease_owner=bindparam("owner", type_=table.lease_owner.type),
            lease_expires_at=bindparam("until", type_=table.lease_expires_at.type),
            **values,
        )
        .returning(*returning)
    )


async def extend_leases(
    conn: AsyncConnection,
    table: Any,
    key: Any,
    ids: Collection[Any],
    owner: str,
    lease_seconds: float,
    *still: ColumnElement[bool],
) -> int:
    """Extend the leases `owner` still holds on the rows of `table` whose `key` is in `ids` (and that
    meet `still`); how many were extended. On PostgreSQL, rows locked by their holder's own unit of work
    are skipped (nobody can claim a locked row; the next beat renews it if it is still ours), so a beat
    never waits behind a long transaction."""
    mine = select(key).where(key.in_(list(ids)), table.lease_owner == owner, *still)
    if conn.dialect.name == "postgresql":
        mine = mine.with_for_update(skip_locked=True)
    result = await conn.execute(
        update(table)
        .where(key.in_(mine.scalar_subquery()), table.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return result.rowcount or 0


class Heartbeat:
    """Renews, every `every_seconds`, the leases of the ids this owner is working on. The beating task
    runs only while something is held."""

    def __init__(
        self, engine: AsyncEngine, renew: Renew, owner: str, lease_seconds: float, every_seconds: float, what: str
    ) -> None:
        self.engine = engine
        self.renew = renew
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.every_seconds = every_seconds
        self.what = what
        self.held: set[str] = set()
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    def hold(self, *ids: str) -> None:
        self.held.update(ids)
        if self.held and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name=f"{self.what}-heartbeat")

    def drop(self, item: str) -> None:
        self.held.discard(item)

    async def beat(self) -> int:
        """One renewal of everything held; how many leases were extended."""
        ids = list(self.held)
        if not ids:
            return 0
        async with self.engine.begin() as conn:
            renewed = await self.renew(conn, self.owner, ids, self.lease_seconds)
        self.beats += 1
        return renewed

    async def _run(self) -> None:
        while self.held:
            await asyncio.sleep(self.every_seconds)
            try:
                await self.beat()
            except Exception as exc:  # the database may be away for a moment; the next beat tries again
                log.warning(f"cannot renew {self.what} leases", extra={"error": repr(exc), "held": len(self.held)})

    async def close(self) -> None:
        self.held.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
