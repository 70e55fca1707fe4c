"""The heartbeat that keeps a live holder's leases (inbox deliveries, escrow releases) from running out.

Leases are short, so that the work of a process that died (kill -9, a lost machine) is taken over
within seconds; the heartbeat renews them while their holder is alive, so that slow work (a release
waiting for its confirmations, a handler waiting on GitHub) is never taken away from a live holder.
Renewing never takes a lease back: only rows this owner still holds are extended, and a holder whose
lease was taken over finds out at its next compare-and-set and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

Renew = Callable[[AsyncConnection, str, Collection[str], float], Awaitable[int]]


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
