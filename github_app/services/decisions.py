"""One decision, one unit of work: the state machine's decision is stored with its audit row, and the
domain events it raised are dispatched once, in the same transaction, to the subscribers that react to
story changes: what GitHub shows for the story's PRs (through the outbox), the marketplace publication
of an approved story, and the escrow release request of a story that is done. A rolled-back
transaction takes all of them with it; none is ever called by hand after a decision.

The planning stages' machine (domain.stage_machine) goes through the same table of subscribers: a
completed stage's Opportunity, release request, Documents and the project's next stage are written by
the subscribers of `StageCompleted`, in the decision's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import PullRequestLink, StagePullRequest
from github_app.db.enums import OpportunityStatus
from github_app.db.models import Deliverable, Opportunity, Project, Story
from github_app.domain import stage_machine as st
from github_app.domain import story_machine as sm
from github_app.services import stages
from github_app.services.stage_views import refresh_stage_pr, refresh_stage_prs
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


@dataclass(frozen=True)
class StageScope:
    """What a stage's subscribers need beyond the decision: the project, the stage's Opportunity, the
    PR's stage row, and the stage files at the merge commit (read from GitHub before any lock)."""

    project: Project
    opportunity: Opportunity | None
    row: StagePullRequest
    repository: str
    document_type: str
    merge_sha: str | None = None
    documents: tuple[stages.StageDocument, ...] | None = None


@dataclass(frozen=True)
class StageRaised:
    session: AsyncSession
    event: st.StageDomainEvent
    actor: sm.Actor
    metadata: dict[str, Any]
    scope: StageScope
    deliverable: Deliverable | None


Subscriber = Callable[[Any], Awaitable[None]]


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


async def _complete_project(raised: Raised) -> None:
    """The last story DONE completes a project in development."""
    if await stages.complete_project_if_done(raised.session, raised.scope.project):
        stages.stage_audit(
            raised.session,
            raised.scope.project.id,
            "developer",
            "project_completed",
            None,
            {**raised.metadata, "reason": "every story of the project is DONE"},
        )


async def _complete_stage(raised: StageRaised) -> None:
    """The stage's Opportunity COMPLETED, its escrow's release requested (the exactly-once path story
    payouts take), a Document per stage file at the merge commit, and the project's next stage."""
    scope, session = raised.scope, raised.session
    assert isinstance(raised.event, st.StageCompleted) and raised.deliverable is not None
    if scope.merge_sha is None or scope.documents is None:
        # The handler reads the files before deciding; a completion without them would lose Documents.
        raise RuntimeError("a stage completed without its merge commit's files")
    opportunity, project = scope.opportunity, scope.project
    assert opportunity is not None
    opportunity.status = OpportunityStatus.COMPLETED
    expert = raised.deliverable.expert_id
    await stages.request_stage_release(
        session, opportunity.id, expert, raised.deliverable.id, str(raised.metadata.get("reason", "stage complete"))
    )
    added = await stages.register_documents(
        session,
        project.id,
        raised.event.stage,
        scope.document_type,
        scope.repository,
        scope.merge_sha,
        scope.documents,
        expert,
    )
    moved_to = await stages.advance_project(session, project, raised.event.stage)
    stages.stage_audit(
        session,
        project.id,
        raised.event.stage,
        "stage_documents_registered",
        None,
        {
            **raised.metadata,
            "documents": added,
            "merge_sha": scope.merge_sha,
            "next_stage": moved_to,
            "project_status": str(project.status),
        },
        opportunity_id=opportunity.id,
        deliverable_id=raised.deliverable.id,
    )


SUBSCRIBERS: dict[type, tuple[Subscriber, ...]] = {
    sm.StoryApproved: (_publish, _forget_refusals),
    sm.StoryDone: (_request_release, _complete_project),
    st.StageCompleted: (_complete_stage,),
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


async def apply_stage_decision(
    session: AsyncSession,
    before: st.StageSnapshot,
    decision: st.StageDecision,
    actor: sm.Actor,
    metadata: dict[str, Any],
    scope: StageScope,
    pr: stages.PrInfo | None,
) -> st.StageDecision:
    """Store a stage decision and dispatch its domain events, as `apply_decision` does for a story;
    the stage's PRs are brought up to date once per decision."""
    deliverable = await stages.store_stage_decision(
        session, scope.row, scope.opportunity, before, decision, actor, metadata, pr
    )
    if isinstance(decision, sm.NoChange):
        return decision
    if isinstance(decision, st.StageChange):
        meta = {**metadata, "reason": decision.reason}
        for event in decision.events:
            for subscriber in SUBSCRIBERS.get(type(event), ()):
                await subscriber(StageRaised(session, event, actor, meta, scope, deliverable))
    await session.flush()
    if scope.opportunity is not None:
        await refresh_stage_prs(session, scope.opportunity.id)
    if scope.row.opportunity_id is None or scope.opportunity is None:
        await refresh_stage_pr(session, scope.row)
    return decision
