"""Group commit: deliveries that arrive together are written in one statement and one transaction.

Each request waits on a future that is resolved only after the transaction holding its delivery has
committed: True when the delivery is new (202), False when its id was already stored (200). A failed
batch fails every request in it, so none is acknowledged. There is no timer: while one batch is being
written the next one gathers, so under light load a delivery is written alone and at once, and under
heavy load batches grow to absorb the commit cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from github_app.inbox.writers import InboxWriter
from github_app.metrics import INGRESS_BATCH_SIZE
from github_app.webhook import Delivery

log = logging.getLogger(__name__)

_Item = tuple[Delivery, asyncio.Future[bool]]


class InboxUnavailable(Exception):
    pass


class GroupCommitWriter:
    def __init__(
        self,
        writer: InboxWriter,
        *,
        max_batch: int = 256,
        flushers: int = 2,
        on_stored: Callable[[int], None] | None = None,
    ) -> None:
        self.writer = writer
        self.max_batch = max_batch
        self.flushers = flushers
        self.on_stored = on_stored
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        # Two flushers on two connections: one gathers and writes while the other waits for its commit.
        self._tasks = [asyncio.create_task(self._flush_loop(), name=f"inbox-flusher-{i}") for i in range(self.flushers)]

    async def submit(self, delivery: Delivery) -> bool:
        if self._closing:
            raise InboxUnavailable("the server is shutting down")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((delivery, future))
        return await future

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < self.max_batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                await self._write(items)
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _write(self, items: list[_Item]) -> None:
        # The first of several deliveries with one id in a batch is written; the rest are duplicates.
        unique: dict[str, Delivery] = {}
        for delivery, _ in items:
            unique.setdefault(delivery.delivery_id, delivery)
        try:
            new_ids = await self.writer.insert_batch(list(unique.values()))
        except Exception as exc:
            log.error("inbox write failed; %d deliveries not acknowledged", len(items), extra={"error": repr(exc)})
            for _, future in items:
                if not future.done():
                    future.set_exception(InboxUnavailable(f"inbox write failed: {type(exc).__name__}"))
            return
        INGRESS_BATCH_SIZE.observe(len(unique))
        for delivery, future in items:
            if not future.done():
                future.set_result(delivery.delivery_id in new_ids and unique.get(delivery.delivery_id) is delivery)
        if new_ids and self.on_stored:
            self.on_stored(len(new_ids))
