"""What a webhook handler receives besides the event: its unit of work and the app's adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from github_app.runtime import Runtime


class PermanentFailure(Exception):
    """A delivery that can never succeed (it contradicts itself, names what cannot exist): the worker
    marks it dead at once instead of retrying."""


@dataclass
class HandlerContext:
    # The delivery's transaction: every row the handler writes commits together with the inbox row
    # being marked done, or not at all.
    session: AsyncSession
    delivery_id: str
    runtime: Runtime
