"""Waiting for a condition in a test: checked every 10 ms, bounded only so that a failing test ends."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def until(condition: Callable[[], Any], *, seconds: float = 30.0, what: str = "the condition") -> None:
    """Return once `condition()` (awaited when it is a coroutine) is true; fail after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                value = condition()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} did not come within {seconds:g} s") from None
