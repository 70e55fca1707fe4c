"""The idle wait of the background loops (inbox worker, outbox sender)."""

from __future__ import annotations

import asyncio


async def sleep_until_woken(wake: asyncio.Event, stop_waiter: asyncio.Task[bool], poll: float) -> None:
    """Until `wake` is set, the loop is told to stop, or `poll` seconds pass (the poll that catches what
    no wake-up announced, such as retries falling due); then `wake` is cleared for the next round."""
    waiter = asyncio.create_task(wake.wait())
    try:
        await asyncio.wait({waiter, stop_waiter}, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        wake.clear()
