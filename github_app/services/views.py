"""Keep what GitHub shows for a pull request (the `BMAD story` check run and the PR comment) in step
with the database, through the outbox: handlers only write the desired state."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import EscrowReleaseRequest, PullRequestLink, StoryState
from github_app.db.enums import StoryStatus
from github_app.db.models import Escrow, Story
from github_app.outbox.enqueue import KIND_CHECK_RUN, KIND_PR_COMMENT, set_desired
from github_app.presentation import StoryView, check_run_payload, pr_comment_body
from github_app.services.people import login_of
from github_app.services.stories import opportunity_of


async def escrow_text(session: AsyncSession, story: Story) -> str:
    release = (
        await session.execute(select(EscrowReleaseRequest.state).where(EscrowReleaseRequest.story_id == story.id))
    ).scalar()
    if release is not None:
        return "release requested" if release == "pending" else f"release {release}"
    opportunity_id = await opportunity_of(session, story.id)
    if opportunity_id is None:
        return "no escrow (not published to the marketplace yet)"
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


async def build_view(session: AsyncSession, link: PullRequestLink, config_problems: tuple[str, ...] = ()) -> StoryView:
    story = await session.get(Story, link.story_id) if link.story_id else None
    state = await session.get(StoryState, story.id) if story else None
    gate_problem = link.gate_problem or (state.gate_problem if state else None)
    # A PR that no longer delivers its story (another PR took over) shows its story but not its merge.
    return StoryView(
        repository=link.repository,
        pr_number=link.pr_number,
        head_sha=link.head_sha,
        story_label=f"Story {story.epic_number}.{story.story_number}: {story.title}" if story else None,
        story_status=str(StoryStatus(story.status)) if story else None,
        developer=await login_of(session, story.assigned_dev_id) if story else None,
        qa=await login_of(session, story.assigned_qa_id) if story else None,
        gate_decision=state.gate if state else None,
        gate_accepted=bool(state and state.gate_accepted),
        gate_note=state.gate_note if state else None,
        gate_path=story.qa_gate_path if story else None,
        gate_problem=gate_problem,
        merged=link.merged,
        escrow=await escrow_text(session, story) if story else "no escrow",
        link_problem=link.link_problem,
        refusal=link.refusal,
        config_problems=tuple(config_problems),
        layout=getattr(config_problems, "layout", None),
    )


async def refresh_pr(session: AsyncSession, link: PullRequestLink, config_problems: tuple[str, ...] = ()) -> None:
    if link.installation_id is None:
        return
    view = await build_view(session, link, config_problems)
    await set_desired(
        session,
        installation_id=link.installation_id,
        repository=link.repository,
        kind=KIND_CHECK_RUN,
        target=link.head_sha,
        payload=check_run_payload(view, details_url=link.html_url),
    )
    if link.story_id is not None:  # the comment appears once the PR is linked, then is edited in place
        await set_desired(
            session,
            installation_id=link.installation_id,
            repository=link.repository,
            kind=KIND_PR_COMMENT,
            target=str(link.pr_number),
            payload={"body": pr_comment_body(view)},
        )


async def refresh_story_prs(session: AsyncSession, story_id: str, config_problems: tuple[str, ...] = ()) -> None:
    links = (await session.execute(select(PullRequestLink).where(PullRequestLink.story_id == story_id))).scalars().all()
    for link in links:
        await refresh_pr(session, link, config_problems)
