"""What a release request pays for: a DONE story, or (with no story) a completed planning stage's
Opportunity. Where its audit rows go and which pull requests show its state."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import EscrowReleaseRequest
from github_app.db.models import Opportunity, Story
from github_app.services.stage_views import refresh_stage_prs
from github_app.services.stages import stage_audit
from github_app.services.stories import audit
from github_app.services.views import refresh_story_prs


async def audit_release(
    session: AsyncSession, request: EscrowReleaseRequest, action: str, meta: dict[str, Any]
) -> None:
    if request.story_id is not None:
        story = await session.get(Story, request.story_id)
        if story is not None:
            audit(session, story, action, None, meta)
        return
    opportunity = await session.get(Opportunity, request.opportunity_id) if request.opportunity_id else None
    if opportunity is not None:
        stage_audit(
            session,
            opportunity.project_id,
            str(opportunity.stage),
            action,
            None,
            meta,
            opportunity_id=opportunity.id,
            deliverable_id=request.deliverable_id,
        )


async def refresh_release_views(session: AsyncSession, story_id: str | None, opportunity_id: str | None) -> None:
    """The PRs showing this release: the story's, or the stage's."""
    if story_id is not None:
        await refresh_story_prs(session, story_id)
    elif opportunity_id is not None:
        await refresh_stage_prs(session, opportunity_id)
