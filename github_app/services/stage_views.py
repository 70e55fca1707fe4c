"""Keep what GitHub shows for a planning stage's pull requests (the `BMAD stage` check run and the PR
comment) in step with the database, through the outbox, with the same writer as the story's views."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import EscrowReleaseRequest, PullRequestLink, StagePullRequest
from github_app.db.enums import OpportunityStatus
from github_app.db.models import Deliverable, Escrow, Opportunity, Project
from github_app.presentation import web_root
from github_app.services.people import login_of
from github_app.services.stages import accepted_expert
from github_app.services.views import drop_unwanted_story_check, release_text, show_on_pr
from github_app.stage_presentation import StageView, stage_check_run_payload, stage_comment_body


async def stage_escrow_text(session: AsyncSession, opportunity_id: str | None) -> str:
    if opportunity_id is None:
        return "no escrow (the stage has no opportunity)"
    release = (
        (
            await session.execute(
                select(EscrowReleaseRequest).where(
                    EscrowReleaseRequest.opportunity_id == opportunity_id, EscrowReleaseRequest.story_id.is_(None)
                )
            )
        )
        .scalars()
        .first()
    )
    if release is not None:
        return release_text(release)
    escrow = (
        (
            await session.execute(
                select(Escrow).where(Escrow.opportunity_id == opportunity_id).order_by(Escrow.created_at.desc())
            )
        )
        .scalars()
        .first()
    )
    if escrow is None:
        return "no escrow yet"
    return f"{str(escrow.status).lower()} ({escrow.amount} {escrow.currency} on {escrow.blockchain})"


def stage_check_target(link: PullRequestLink) -> str:
    return f"{link.head_sha}:pr{link.pr_number}:stage"


async def refresh_stage_pr(session: AsyncSession, row: StagePullRequest) -> None:
    link = await session.get(PullRequestLink, (row.repository_key, row.pr_number))
    if link is None or link.installation_id is None:
        return
    opportunity = await session.get(Opportunity, row.opportunity_id) if row.opportunity_id else None
    deliverable = await session.get(Deliverable, row.deliverable_id) if row.deliverable_id else None
    project = await session.get(Project, row.project_id)
    head = row.merged_head or link.head_sha
    completed = (
        opportunity is not None
        and opportunity.status == OpportunityStatus.COMPLETED
        and deliverable is not None
        and str(deliverable.status) == "APPROVED"
        and row.merged_head is not None
    )
    view = StageView(
        repository=link.repository,
        pr_number=link.pr_number,
        head_sha=link.head_sha,
        stage=row.stage,
        status=str(deliverable.status) if deliverable else None,
        expert=await login_of(session, await accepted_expert(session, opportunity)),
        client=await login_of(session, project.client_id) if project else None,
        documents=row.documents or "",
        approved_at_head=row.approved_head is not None and row.approved_head == head,
        merged=row.merged_head is not None,
        completed=completed,
        escrow=await stage_escrow_text(session, row.opportunity_id) if deliverable else "no payment (no deliverable)",
        refusal=row.refusal,
        review_problem=row.review_problem,
        review_notes=deliverable.review_notes if deliverable else None,
        web_url=web_root(link.html_url),
    )
    payload = stage_check_run_payload(view, details_url=link.html_url)
    comment = None if link.story_id is not None else stage_comment_body(view)  # the story's comment wins
    await show_on_pr(session, link, payload, stage_check_target(link), f"stage-pr:{link.pr_number}", comment)
    # The story's handler ran first in this delivery and may have wished a story run the PR does not get.
    await drop_unwanted_story_check(session, link)


async def refresh_stage_prs(session: AsyncSession, opportunity_id: str) -> None:
    # In PR order, the order every unit of work writes outbox rows in (see lock_order).
    stmt = (
        select(StagePullRequest)
        .where(StagePullRequest.opportunity_id == opportunity_id)
        .order_by(StagePullRequest.repository_key, StagePullRequest.pr_number)
    )
    for row in (await session.execute(stmt)).scalars().all():
        await refresh_stage_pr(session, row)
