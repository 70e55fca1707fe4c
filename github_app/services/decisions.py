"""One decision, one unit of work: the state machine's decision is stored with its audit row, and the
domain events it raised are dispatched once, in the same transaction, to the subscribers that react to
story changes: what GitHub shows for the story's PRs (through the outbox), the marketplace publication
of an approved story, and the escrow release request of a story that is done. A rolled-back
transaction takes all of them with it; none is ever called by hand after a decision."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import PullRequestLink
from github_app.db.models import Project, Story
from github_app.domain import story_machine as sm
from github_app.services.stories import PrInfo, publish_to_marketplace, request_escrow_release, store_decision
from github_app.services.views import refresh_story_prs


@dataclass(frozen=True)
class StoryScope:
    """What subscribers need to know beyond the story: its project and the repository's settings."""

    project: Project
    budget: dict[str, Any] | None = None
    config_problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Raised:
    """A domain event as its subscribers receive it."""

    session: AsyncSession
    story: Story
    event: sm.DomainEvent
    actor: sm.Actor
    metadata: dict[str, Any]
    scope: StoryScope


Subscriber = Callable[[Raised], Awaitable[None]]


async def _publish(raised: Raised) -> None:
    await publish_to_marketplace(
        raised.session, raised.story, raised.scope.project, raised.scope.budget, raised.metadata
    )


async def _request_release(raised: Raised) -> None:
    await request_escrow_release(raised.session, raised.story, raised.actor, raised.metadata)


async def _forget_refusals(raised: Raised) -> None:
    """Refusals made while the story was a draft judged a story that no longer is one; each PR's next
    event judges it again."""
    await raised.session.execute(
        update(PullRequestLink).where(PullRequestLink.story_id == raised.story.id).values(refusal=None)
    )


SUBSCRIBERS: dict[type, tuple[Subscriber, ...]] = {
    sm.StoryApproved: (_publish, _forget_refusals),
    sm.StoryDone: (_request_release,),
}


async def apply_decision(
    session: AsyncSession,
    story: Story,
    decision: sm.Decision,
    actor: sm.Actor,
    metadata: dict[str, Any],
    scope: StoryScope,
    pr: PrInfo | None = None,
) -> sm.Decision:
    """Store `decision` and dispatch its domain events. Every event also brings the story's PRs up to
    date, once per decision however many events it raised."""
    await store_decision(session, story, decision, actor, metadata, pr)
    if isinstance(decision, sm.NoChange):
        return decision
    meta = {**metadata, "reason": decision.reason}
    for event in decision.events:
        for subscriber in SUBSCRIBERS.get(type(event), ()):
            await subscriber(Raised(session, story, event, actor, meta, scope))
    if decision.events:
        await session.flush()
        await refresh_story_prs(session, story.id, scope.config_problems)
    return decision
