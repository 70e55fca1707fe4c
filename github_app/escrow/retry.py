"""Retrying a release that failed: what `bmad-app escrow retry` and `/bmad release` both do."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db import wakes
from github_app.db.app_tables import EscrowReleaseRequest, ReleaseState
from github_app.db.types import utcnow
from github_app.escrow.subjects import refresh_release_views


class RetryRefused(Exception):
    pass


async def retry_release(session: AsyncSession, request: EscrowReleaseRequest) -> None:
    """Make a FAILED release due again, in the caller's transaction. Any transaction already recorded
    for it is asked about by the release worker, never signed again blindly: never a second payment."""
    if request.state != ReleaseState.FAILED:
        raise RetryRefused(f"the release is {request.state}, not failed: nothing to retry")
    request.state = ReleaseState.PENDING
    request.attempts = 0
    request.next_attempt_at = utcnow()
    request.lease_owner = None
    request.lease_expires_at = None
    request.last_error = None
    wakes.ask(session, wakes.RELEASES)
    await session.flush()
    await refresh_release_views(session, request.story_id, request.opportunity_id)
