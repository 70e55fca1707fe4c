"""A story's rows: loading it under its lock, its snapshot for the state machine, storing a decision
(story, extra state, deliverables, audit trail), and what the decision's subscribers write
(marketplace publication, the escrow release request), all in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.gate_file import GateDecision
from github_app.db import wakes
from github_app.db.app_tables import EscrowReleaseRequest, StoryOpportunity, StoryState
from github_app.db.enums import BidStatus, DeliverableStatus, EscrowStatus, Stage, StoryStatus
from github_app.db.models import Bid, Deliverable, Escrow, Opportunity, Project, Story, StoryAuditLog
from github_app.db.queries import current_one
from github_app.db.types import new_id, utcnow
from github_app.db.upsert import insert_if_absent, upsert
from github_app.domain.escrow import bind_escrow
from github_app.domain.story_machine import (
    Action,
    Actor,
    Decision,
    NoChange,
    Refused,
    StorySnapshot,
    Transition,
)
from github_app.domain.vocabulary import ProjectStatus
from github_app.services.people import SYSTEM_USER_ID

REFUSED_ACTION = "transition_refused"
DEFAULT_BUDGET = {"min": 0, "max": 0, "currency": "USDC"}


@dataclass(frozen=True)
class PrInfo:
    """The PR a decision is about, for the story's devPr* columns and its deliverable."""

    number: int
    url: str
    author_login: str


async def lock_story(session: AsyncSession, story_id: str) -> Story:
    """Changes to one story are serialized by its row lock (PostgreSQL; SQLite has one writer). NO KEY
    UPDATE, as in lock_order: rows referencing the story may be written meanwhile."""
    stmt = select(Story).where(Story.id == story_id).with_for_update(key_share=True)
    story = await current_one(session, stmt)  # a copy already in the session may predate the lock
    return story


async def find_story(session: AsyncSession, project_id: str, epic: int, number: int) -> Story | None:
    stmt = select(Story).where(Story.project_id == project_id, Story.epic_number == epic, Story.story_number == number)
    return (await session.execute(stmt)).scalars().first()


async def draft_story(
    session: AsyncSession,
    project_id: str,
    epic: int,
    number: int,
    *,
    title: str,
    description: str,
    acceptance_criteria: str,
    story_file: str | None,
) -> tuple[Story, bool]:
    """The project's story `epic.number`, created as a DRAFT from these fields when it does not exist yet,
    locked; and whether it was created now. Two deliveries creating it at once make one row."""
    now = utcnow()
    created = await insert_if_absent(
        session,
        Story.__table__,  # type: ignore[arg-type]
        {
            "id": new_id(),
            "projectId": project_id,
            "epicNumber": epic,
            "storyNumber": number,
            "title": title,
            "description": description,
            "acceptanceCriteria": acceptance_criteria,
            "storyFile": story_file,
            "status": StoryStatus.DRAFT.value,
            "createdAt": now,
            "updatedAt": now,
        },
        conflict=["projectId", "epicNumber", "storyNumber"],
    )
    found = await find_story(session, project_id, epic, number)
    assert found is not None
    return await lock_story(session, found.id), created


async def story_state(session: AsyncSession, story_id: str) -> StoryState:
    state = await session.get(StoryState, story_id)
    if state is None:
        await upsert(
            session,
            StoryState.__table__,
            {"story_id": story_id, "updated_at": utcnow()},  # type: ignore[arg-type]
            conflict=["story_id"],
        )
        state = await session.get(StoryState, story_id)
        assert state is not None
    return state


async def deliverable_for(session: AsyncSession, story_id: str, pr_number: int | None) -> Deliverable | None:
    if pr_number is None:
        return None
    # Asked up to three times per decision (snapshot, deliverable, release). A PR's deliverable is only
    # created when it has none, so once found it stays the answer for the unit of work, unless a
    # savepoint that made it was rolled back (it is no longer persistent then).
    found: dict[tuple[str, int], Deliverable] = session.info.setdefault("deliverables", {})
    known = found.get((story_id, pr_number))
    if known is not None and inspect(known).persistent:
        return known
    stmt = (
        select(Deliverable)
        .where(Deliverable.story_id == story_id, Deliverable.pr_number == pr_number)
        .order_by(Deliverable.submitted_at.desc())
        .limit(1)
    )
    deliverable = (await session.execute(stmt)).scalars().first()
    if deliverable is not None:
        found[(story_id, pr_number)] = deliverable
    return deliverable


async def snapshot(session: AsyncSession, story: Story) -> StorySnapshot:
    state = await story_state(session, story.id)
    deliverable = await deliverable_for(session, story.id, story.dev_pr_number)
    project = await session.get(Project, story.project_id)
    return StorySnapshot(
        epic=story.epic_number,
        story=story.story_number,
        status=StoryStatus(story.status),
        assigned_dev_id=story.assigned_dev_id,
        assigned_qa_id=story.assigned_qa_id,
        pr_number=story.dev_pr_number,
        pr_merged=state.pr_merged,
        gate=GateDecision(state.gate) if state.gate else None,
        gate_accepted=state.gate_accepted,
        deliverable_status=DeliverableStatus(deliverable.status) if deliverable else None,
        reviewed_heads=frozenset(h for h in (state.reviewed_head, state.reviewed_base) if h),
        merged_head=state.merged_head,
        gate_expires_at=state.gate_expires_at,
        blocked_from=StoryStatus(state.blocked_from) if state.blocked_from else None,
        validation_score=story.validation_score,
        project_status=ProjectStatus(project.status) if project is not None else None,
    )


def audit(
    session: AsyncSession,
    story: Story,
    action: str,
    actor: Actor | None,
    metadata: dict[str, Any],
    from_status: StoryStatus | None = None,
    to_status: StoryStatus | None = None,
) -> None:
    session.add(
        StoryAuditLog(
            id=new_id(),
            story_id=story.id,
            user_id=(actor.user_id if actor and actor.user_id else SYSTEM_USER_ID),
            action=action,
            from_status=from_status,
            to_status=to_status,
            metadata_={k: v for k, v in metadata.items() if v is not None},
        )
    )


async def latest_refusal(session: AsyncSession, story_id: str) -> str | None:
    stmt = (
        select(StoryAuditLog.action, StoryAuditLog.metadata_)
        .where(StoryAuditLog.story_id == story_id)
        .order_by(StoryAuditLog.created_at.desc(), StoryAuditLog.id.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    if row and row[0] == REFUSED_ACTION and isinstance(row[1], dict):
        return str(row[1].get("reason"))
    return None


async def store_decision(
    session: AsyncSession,
    story: Story,
    decision: Decision,
    actor: Actor,
    metadata: dict[str, Any],
    pr: PrInfo | None = None,
) -> None:
    """Store what the machine decided, with its audit row. The story must be locked by the caller."""
    meta = {**metadata, "reason": decision.reason, "github_login": actor.github_login}
    if isinstance(decision, NoChange):
        return
    if isinstance(decision, Refused):
        # The same refusal repeated by every push to a PR is one fact, audited once.
        if await latest_refusal(session, story.id) != decision.reason:
            audit(session, story, REFUSED_ACTION, actor, meta, StoryStatus(story.status), None)
        return
    after = decision.after
    from_status = StoryStatus(story.status)
    to_status = decision.to_status if isinstance(decision, Transition) else decision.status
    story.status = to_status
    # The devPr* columns describe the PR delivering the story, as the decision left it.
    if after.pr_number is None:
        story.dev_pr_number = story.dev_pr_url = story.dev_pr_author = None
    elif pr is not None and pr.number == after.pr_number:
        story.dev_pr_number, story.dev_pr_url, story.dev_pr_author = pr.number, pr.url, pr.author_login
    state = await story_state(session, story.id)
    state.pr_merged = after.pr_merged
    state.merged_head = after.merged_head
    state.gate = after.gate.value if after.gate else None
    state.gate_accepted = after.gate_accepted
    state.gate_expires_at = after.gate_expires_at
    state.blocked_from = after.blocked_from.value if after.blocked_from else None
    if decision.action in (Action.DEVELOPER_ASSIGNED, Action.QA_ASSIGNED):
        # Assignments made by a command, as the machine allowed them; other decisions leave them alone.
        story.assigned_dev_id, story.assigned_qa_id = after.assigned_dev_id, after.assigned_qa_id
    if after.validation_score is not None and after.validation_score != story.validation_score:
        story.validation_score = after.validation_score
        story.validated_at, story.validated_by = utcnow(), actor.user_id
    heads = sorted(after.reviewed_heads)
    if set(heads) != {h for h in (state.reviewed_head, state.reviewed_base) if h}:
        # Two columns: a head the machine added first, then the latest ones already covered (a review
        # extended by QA's own commit keeps the head it was built on, which is still a reviewed state).
        newest = [h for h in heads if h not in (state.reviewed_head, state.reviewed_base)]
        kept = [h for h in (state.reviewed_head, state.reviewed_base) if h and h in after.reviewed_heads]
        ordered = (newest + kept)[:2]
        state.reviewed_head = ordered[0] if ordered else None
        state.reviewed_base = ordered[1] if len(ordered) > 1 else None
    if decision.deliverable_status is not None:
        await _set_deliverable(session, story, decision.deliverable_status, decision.deliverable_pr, pr)
    meta["events"] = [type(event).__name__ for event in decision.events]
    audit(
        session,
        story,
        decision.action.value,
        actor,
        meta,
        from_status,
        to_status if isinstance(decision, Transition) else None,
    )
    if to_status is StoryStatus.APPROVED and from_status is StoryStatus.DRAFT:
        story.validated_at = utcnow()
        story.validated_by = actor.user_id


async def _set_deliverable(
    session: AsyncSession, story: Story, status: DeliverableStatus, pr_number: int | None, pr: PrInfo | None
) -> None:
    if pr_number is None:
        return
    deliverable = await deliverable_for(session, story.id, pr_number)
    now = utcnow()
    if deliverable is None:
        if pr is None or pr.number != pr_number or story.assigned_dev_id is None:
            return
        deliverable = Deliverable(
            id=new_id(),
            opportunity_id=await opportunity_of(session, story.id),
            story_id=story.id,
            expert_id=story.assigned_dev_id,
            stage=Stage.developer,
            pr_url=pr.url,
            pr_number=pr.number,
            pr_author=pr.author_login,
            status=status,
            submitted_at=now,
        )
        session.add(deliverable)
    else:
        deliverable.status = status
        if status is DeliverableStatus.SUBMITTED:
            deliverable.submitted_at = now
    if status is not DeliverableStatus.SUBMITTED:
        deliverable.reviewed_at = now
    if status is DeliverableStatus.APPROVED:
        deliverable.approved_at = now


async def opportunity_of(session: AsyncSession, story_id: str) -> str | None:
    stmt = select(StoryOpportunity.opportunity_id).where(StoryOpportunity.story_id == story_id)
    return (await session.execute(stmt)).scalar()


async def request_escrow_release(session: AsyncSession, story: Story, actor: Actor, meta: dict[str, Any]) -> None:
    """The durable instruction to pay, in DONE's own transaction. Unique per story: never twice.

    A story whose escrow is not funded yet says so from DONE on (the release worker's own rule, with no
    chain involved), so that the worker's first pass changes nothing GitHub shows and writes nothing."""
    opportunity_id = await opportunity_of(session, story.id)
    funded: list[str] = []
    pending: list[str] = []
    if opportunity_id is not None and story.assigned_dev_id is not None:
        stmt = select(Escrow.id, Escrow.status).where(
            Escrow.opportunity_id == opportunity_id,
            Escrow.expert_id == story.assigned_dev_id,
            Escrow.status.in_((EscrowStatus.FUNDED, EscrowStatus.PENDING)),
        )
        for escrow_id, status in (await session.execute(stmt)).all():
            (funded if status == EscrowStatus.FUNDED else pending).append(escrow_id)
    binding = bind_escrow(story.assigned_dev_id or "", opportunity_id, sorted(funded), sorted(pending))
    deliverable = await deliverable_for(session, story.id, story.dev_pr_number)
    now = utcnow()
    await upsert(
        session,
        EscrowReleaseRequest.__table__,  # type: ignore[arg-type]
        {
            "id": new_id(),
            "story_id": story.id,
            "deliverable_id": deliverable.id if deliverable else None,
            "expert_id": story.assigned_dev_id or "",
            "opportunity_id": opportunity_id,
            "escrow_id": funded[0] if funded else None,  # a hint: the worker binds again when it runs
            "state": "pending",
            "waiting_for": binding.waiting_for,
            "reason": str(meta.get("reason", "story DONE")),
            "created_at": now,
            "updated_at": now,
        },
        conflict=["story_id"],
    )
    wakes.ask(session, wakes.RELEASES)


async def ensure_developer(session: AsyncSession, story: Story, metadata: dict[str, Any]) -> None:
    """Story.assignedDevId, or else the expert of the accepted bid on the story's opportunity, which
    the app then records on the story."""
    if story.assigned_dev_id is not None:
        return
    stmt = (
        select(Bid.expert_id)
        .join(Opportunity, Opportunity.accepted_bid_id == Bid.id)
        .join(StoryOpportunity, StoryOpportunity.opportunity_id == Opportunity.id)
        .where(StoryOpportunity.story_id == story.id, Bid.status == BidStatus.ACCEPTED)
    )
    expert = (await session.execute(stmt)).scalar()
    if expert is not None:
        story.assigned_dev_id = expert
        audit(
            session,
            story,
            "developer_assigned",
            None,
            {**metadata, "reason": "expert of the accepted bid on the story's opportunity", "developer_id": expert},
        )


async def publish_to_marketplace(
    session: AsyncSession,
    story: Story,
    project: Project,
    budget: dict[str, Any] | None,
    metadata: dict[str, Any],
) -> None:
    """An APPROVED story becomes a developer-stage Opportunity, linked once through story_opportunity."""
    if await opportunity_of(session, story.id) is not None:
        return
    opportunity = Opportunity(
        id=new_id(),
        project_id=project.id,
        stage=Stage.developer,
        title=f"Story {story.epic_number}.{story.story_number}: {story.title}",
        description=f"{story.description}\n\n## Acceptance Criteria\n{story.acceptance_criteria}".strip(),
        budget=budget or DEFAULT_BUDGET,
    )
    session.add(opportunity)
    await session.flush()
    await upsert(
        session,
        StoryOpportunity.__table__,  # type: ignore[arg-type]
        {"story_id": story.id, "opportunity_id": opportunity.id, "created_at": utcnow()},
        conflict=["story_id"],
    )
    audit(
        session,
        story,
        "published_to_marketplace",
        None,
        {**metadata, "opportunity_id": opportunity.id, "reason": "story approved"},
    )
