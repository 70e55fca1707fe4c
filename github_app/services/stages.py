"""A planning stage's rows: its Opportunity and expert, the snapshot for the stage machine, storing a
decision (Deliverable, the PR's stage row, the audit trail), and what a completed stage's subscribers
write (Opportunity COMPLETED, the release request, the Documents, the project's next stage), all in
the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.planning import PLANNING_STAGES, mime_type
from github_app.db.app_tables import EscrowReleaseRequest, StageAuditLog, StagePullRequest
from github_app.db.enums import BidStatus, DeliverableStatus, EscrowStatus, OpportunityStatus, Stage
from github_app.db.models import Bid, Deliverable, Document, Escrow, Opportunity, Project, Story, User
from github_app.db.queries import current_one
from github_app.db.types import new_id, utcnow
from github_app.domain import stage_machine as st
from github_app.domain.story_machine import Actor, NoChange, Refused
from github_app.domain.vocabulary import ProjectStatus, Role
from github_app.services.people import SYSTEM_USER_ID, is_tied_to_project

REFUSED_ACTION = "stage_change_refused"
REVIEW_NOT_COUNTED = "stage_review_not_counted"
STAGE_ORDER = tuple(s.value for s in Stage)  # analyst, pm, architect, ux, developer, qa


@dataclass(frozen=True)
class StageDocument:
    """A stage file at the merge commit, as GitHub's contents API lists it."""

    path: str
    size: int


@dataclass(frozen=True)
class PrInfo:
    number: int
    url: str
    author_login: str


async def stage_opportunity(session: AsyncSession, project_id: str, stage: str) -> Opportunity | None:
    """The stage's Opportunity: the one with an accepted bid if any, else the newest."""
    stmt = (
        select(Opportunity)
        .where(Opportunity.project_id == project_id, Opportunity.stage == Stage(stage))
        .order_by(Opportunity.accepted_bid_id.is_(None), Opportunity.created_at.desc(), Opportunity.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def lock_opportunity(session: AsyncSession, opportunity_id: str) -> Opportunity:
    """Changes to one stage are serialized by its Opportunity's row lock (SQLite: one writer)."""
    stmt = select(Opportunity).where(Opportunity.id == opportunity_id).with_for_update(key_share=True)
    opportunity = await current_one(session, stmt)
    return opportunity


async def accepted_expert(session: AsyncSession, opportunity: Opportunity | None) -> str | None:
    if opportunity is None or opportunity.accepted_bid_id is None:
        return None
    stmt = select(Bid.expert_id).where(Bid.id == opportunity.accepted_bid_id, Bid.status == BidStatus.ACCEPTED)
    return (await session.execute(stmt)).scalar()


async def named_reviewers(session: AsyncSession, project: Project, logins: tuple[str, ...]) -> frozenset[str]:
    """The users among `logins` who are PMs or architects of the project (tied to it)."""
    if not logins:
        return frozenset()
    lowered = [login.lower() for login in logins]
    stmt = select(User).where(
        func.lower(User.github_username).in_(lowered), User.role.in_((Role.PM.value, Role.ARCHITECT.value))
    )
    users = (await session.execute(stmt)).scalars().all()
    return frozenset([u.id for u in users if await is_tied_to_project(session, u, project)])


async def delivering(session: AsyncSession, opportunity_id: str) -> tuple[StagePullRequest, Deliverable] | None:
    """The PR delivering the stage: the newest one with a Deliverable not REJECTED, else the newest one."""
    stmt = (
        select(StagePullRequest, Deliverable)
        .join(Deliverable, Deliverable.id == StagePullRequest.deliverable_id)
        .where(StagePullRequest.opportunity_id == opportunity_id)
        .order_by(
            (Deliverable.status == DeliverableStatus.REJECTED),
            StagePullRequest.created_at.desc(),
            StagePullRequest.pr_number.desc(),
        )
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def snapshot(
    session: AsyncSession, project: Project, stage: str, opportunity: Opportunity | None, reviewers: frozenset[str]
) -> st.StageSnapshot:
    found = await delivering(session, opportunity.id) if opportunity is not None else None
    spr, deliverable = found if found else (None, None)
    return st.StageSnapshot(
        stage=stage,
        project_status=ProjectStatus(project.status),
        current_stage=str(project.current_stage) if project.current_stage else None,
        client_id=project.client_id,
        expert_id=await accepted_expert(session, opportunity),
        reviewer_ids=reviewers,
        completed=opportunity is not None and opportunity.status == OpportunityStatus.COMPLETED,
        pr_number=spr.pr_number if spr else None,
        status=DeliverableStatus(deliverable.status) if deliverable else None,
        approved_head=spr.approved_head if spr else None,
        merged_head=spr.merged_head if spr else None,
    )


def stage_audit(
    session: AsyncSession,
    project_id: str,
    stage: str,
    action: str,
    actor: Actor | None,
    metadata: dict[str, Any],
    *,
    opportunity_id: str | None = None,
    deliverable_id: str | None = None,
    from_status: DeliverableStatus | None = None,
    to_status: DeliverableStatus | None = None,
) -> None:
    session.add(
        StageAuditLog(
            id=new_id(),
            project_id=project_id,
            stage=stage,
            opportunity_id=opportunity_id,
            deliverable_id=deliverable_id,
            user_id=actor.user_id if actor and actor.user_id else SYSTEM_USER_ID,
            action=action,
            from_status=str(from_status) if from_status else None,
            to_status=str(to_status) if to_status else None,
            metadata_={k: v for k, v in metadata.items() if v is not None},
            created_at=utcnow(),
        )
    )


async def stage_pr_row(
    session: AsyncSession, repository: str, number: int, project_id: str, stage: str, opportunity_id: str | None
) -> StagePullRequest:
    """The PR's stage row, created when absent."""
    key = (repository.lower(), number)
    row = await session.get(StagePullRequest, key)
    if row is None:
        row = StagePullRequest(
            repository_key=key[0],
            pr_number=number,
            project_id=project_id,
            stage=stage,
            opportunity_id=opportunity_id,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(row)
        await session.flush()
    return row


async def store_stage_decision(
    session: AsyncSession,
    row: StagePullRequest,
    opportunity: Opportunity | None,
    before: st.StageSnapshot,
    decision: st.StageDecision,
    actor: Actor,
    metadata: dict[str, Any],
    pr: PrInfo | None,
) -> Deliverable | None:
    """Store what the stage machine decided about PR `row`, with its audit row; the Deliverable it
    changed, if any."""
    meta = {**metadata, "reason": decision.reason, "github_login": actor.github_login}
    opportunity_id = opportunity.id if opportunity else None
    if isinstance(decision, NoChange):
        return None
    if isinstance(decision, Refused):
        if row.refusal != decision.reason:  # the same refusal repeated by every push is one fact
            row.refusal = decision.reason
            stage_audit(session, row.project_id, row.stage, REFUSED_ACTION, actor, meta, opportunity_id=opportunity_id)
        return None
    after = decision.after
    assert after.pr_number == row.pr_number and after.status is not None and opportunity is not None
    deliverable = await session.get(Deliverable, row.deliverable_id) if row.deliverable_id else None
    previous = DeliverableStatus(deliverable.status) if deliverable else None
    now = utcnow()
    if deliverable is None:
        deliverable = Deliverable(
            id=new_id(),
            opportunity_id=opportunity.id,
            story_id=None,
            expert_id=after.expert_id or "",
            stage=Stage(row.stage),
            pr_url=pr.url if pr else "",
            pr_number=row.pr_number,
            pr_author=pr.author_login if pr else "",
            status=after.status,
            submitted_at=now,
        )
        session.add(deliverable)
        await session.flush()
        row.deliverable_id = deliverable.id
    deliverable.status = after.status
    if after.status is DeliverableStatus.SUBMITTED and previous is not DeliverableStatus.SUBMITTED:
        deliverable.submitted_at = now
    if after.status is not DeliverableStatus.SUBMITTED and after.status is not previous:
        deliverable.reviewed_at = now
    if after.status is DeliverableStatus.APPROVED and previous is not DeliverableStatus.APPROVED:
        deliverable.approved_at = now
    if decision.review_notes is not None:
        deliverable.review_notes = decision.review_notes
    row.approved_head, row.merged_head = after.approved_head, after.merged_head
    row.refusal = None
    row.review_problem = None
    row.updated_at = now
    meta["events"] = [type(event).__name__ for event in decision.events]
    stage_audit(
        session,
        row.project_id,
        row.stage,
        decision.action.value,
        actor,
        meta,
        opportunity_id=opportunity.id,
        deliverable_id=deliverable.id,
        from_status=previous,
        to_status=after.status if after.status is not previous else None,
    )
    return deliverable


# --- what a completed stage writes ---------------------------------------------------------------


async def request_stage_release(
    session: AsyncSession, opportunity_id: str, expert_id: str, deliverable_id: str | None, reason: str
) -> None:
    """The durable instruction to pay the stage's expert, in the completion's own transaction. Unique
    per stage Opportunity: never twice. The release worker binds the escrow when it runs."""
    hint = (
        (
            await session.execute(
                select(Escrow.id).where(
                    Escrow.opportunity_id == opportunity_id,
                    Escrow.expert_id == expert_id,
                    Escrow.status == EscrowStatus.FUNDED,
                )
            )
        )
        .scalars()
        .first()
    )
    now = utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(EscrowReleaseRequest)
        .values(
            id=new_id(),
            story_id=None,
            deliverable_id=deliverable_id,
            expert_id=expert_id,
            opportunity_id=opportunity_id,
            escrow_id=hint,
            state="pending",
            reason=reason,
            created_at=now,
            updated_at=now,
            attempts=0,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing()
    )


async def register_documents(
    session: AsyncSession,
    project_id: str,
    stage: str,
    document_type: str,
    repository: str,
    merge_sha: str,
    files: tuple[StageDocument, ...],
    uploaded_by: str,
) -> int:
    """A Document per stage file at the merge commit; a file already registered at that commit is not
    registered again."""
    added = 0
    for doc in files:
        storage = f"github:{repository}@{merge_sha}:{doc.path}"
        exists = (
            await session.execute(
                select(Document.id).where(Document.project_id == project_id, Document.storage_path == storage)
            )
        ).first()
        if exists:
            continue
        session.add(
            Document(
                id=new_id(),
                project_id=project_id,
                uploaded_by_id=uploaded_by,
                filename=doc.path.rsplit("/", 1)[-1],
                storage_path=storage,
                mime_type=mime_type(doc.path),
                size=doc.size,
                document_type=document_type,
            )
        )
        added += 1
    return added


async def advance_project(session: AsyncSession, project: Project, completed: str) -> str | None:
    """Project.currentStage moves to the next planning stage that has an Opportunity; past the last
    one, to the developer stage, and the project is IN_DEVELOPMENT. The new stage, if it moved."""
    if project.status == ProjectStatus.CANCELLED or str(project.current_stage or "") != completed:
        return None
    later = [s for s in PLANNING_STAGES if STAGE_ORDER.index(s) > STAGE_ORDER.index(completed)]
    for stage in later:
        if await stage_opportunity(session, project.id, stage) is not None:
            project.current_stage = Stage(stage)
            return stage
    project.current_stage = Stage.developer
    project.status = ProjectStatus.IN_DEVELOPMENT  # type: ignore[assignment]
    return Stage.developer.value


async def complete_project_if_done(session: AsyncSession, project: Project) -> bool:
    """An IN_DEVELOPMENT project whose stories are all DONE is COMPLETED."""
    if project.status != ProjectStatus.IN_DEVELOPMENT:
        return False
    open_stories = (
        await session.execute(
            select(func.count()).select_from(Story).where(Story.project_id == project.id, Story.status != "DONE")
        )
    ).scalar_one()
    total = (
        await session.execute(select(func.count()).select_from(Story).where(Story.project_id == project.id))
    ).scalar_one()
    if total == 0 or open_stories:
        return False
    project.status = ProjectStatus.COMPLETED  # type: ignore[assignment]
    return True
