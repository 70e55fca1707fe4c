"""Keep what GitHub shows for a pull request (the `BMAD story` check run and the PR comment) in step
with the database, through the outbox: handlers only write the desired state."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import EscrowReleaseRequest, PullRequestLink, ReleaseState, StagePullRequest, StoryState
from github_app.db.enums import StoryStatus
from github_app.db.models import Escrow, Story
from github_app.outbox.enqueue import KIND_CHECK_RUN, KIND_PR_COMMENT, set_all_desired, withdraw_desired
from github_app.presentation import (
    CHECK_RUN_NAME,
    STRICTNESS,
    StoryView,
    assess,
    check_run_payload,
    pr_comment_body,
    web_root,
)
from github_app.services.people import login_of
from github_app.services.stories import opportunity_of
from github_app.stage_presentation import check_runs_for, story_check_superseded


def release_text(release: EscrowReleaseRequest) -> str:
    """The structured escrow state a DONE story shows: waiting for funding, releasing, paid, failed."""
    link = f" ([transaction]({release.tx_url}))" if release.tx_url else ""
    if release.state == ReleaseState.RELEASED:
        return f"paid{link}"
    if release.state == ReleaseState.RELEASING:
        return f"releasing: payment sent, waiting for confirmation{link}"
    if release.state == ReleaseState.FAILED:
        return (
            f"failed: {release.last_error or 'unknown reason'}. An operator fixes the cause, then runs "
            f"`bmad-app escrow retry {release.escrow_id or release.story_id}` (it never pays twice)"
        )
    if release.state == ReleaseState.CANCELLED:
        return "refunded to the client: no payment"
    if release.waiting_for:
        return f"release pending: {release.waiting_for}"
    return "release requested"


async def escrow_text(session: AsyncSession, story: Story) -> str:
    release = (
        (await session.execute(select(EscrowReleaseRequest).where(EscrowReleaseRequest.story_id == story.id)))
        .scalars()
        .first()
    )
    if release is not None:
        return release_text(release)
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
    reviewed = {h for h in (state.reviewed_head, state.reviewed_base) if h} if state else set()
    delivers = story is not None and story.dev_pr_number == link.pr_number
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
        delivers=delivers,
        delivering_pr=story.dev_pr_number if story else None,
        head_reviewed=link.head_sha in reviewed,
        reverted_by=link.reverted_by_pr,
        layout=getattr(config_problems, "layout", None),
        web_url=web_root(link.html_url),
    )


async def check_runs_of(session: AsyncSession, link: PullRequestLink) -> frozenset[str]:
    """The check runs `link` gets (`stage_presentation.check_runs_for`): a stage PR is one the planning
    stages judged (it has a stage row, a deliverable or a refusal)."""
    stage_pr = await session.get(StagePullRequest, (link.repository_key, link.pr_number)) is not None
    return check_runs_for(story_pr=_story_pr(link), stage_pr=stage_pr)


def _story_pr(link: PullRequestLink) -> bool:
    return link.story_id is not None or link.reverts_pr is not None or link.reverted_by_pr is not None


async def gets_story_check(session: AsyncSession, link: PullRequestLink) -> bool:
    # A story's PR always does (`check_runs_for`): no need to ask whether it is a stage PR too.
    return _story_pr(link) or CHECK_RUN_NAME in await check_runs_of(session, link)


async def drop_unwanted_story_check(session: AsyncSession, link: PullRequestLink) -> bool:
    """Withdraw the `BMAD story` run of `link`'s head when the PR does not get one; True if it does not."""
    if await gets_story_check(session, link):
        return False
    assert link.installation_id is not None
    await withdraw_desired(
        session,
        installation_id=link.installation_id,
        repository=link.repository,
        kind=KIND_CHECK_RUN,
        target=check_run_target(link),
        shown_instead={**story_check_superseded(link.head_sha, link.html_url), "external_id": f"pr:{link.pr_number}"},
    )
    return True


def check_run_target(link: PullRequestLink) -> str:
    """One run per PR and head commit: two PRs on one head never overwrite each other's run."""
    return f"{link.head_sha}:pr{link.pr_number}"


async def refresh_pr(session: AsyncSession, link: PullRequestLink, config_problems: tuple[str, ...] = ()) -> None:
    """What GitHub shows for `link`, and for the other open PRs on its head commit: GitHub judges a
    commit by the latest run of a name, so each of them shows the strictest of their verdicts."""
    if link.installation_id is None or await drop_unwanted_story_check(session, link):
        return
    others = (
        (
            await session.execute(
                select(PullRequestLink).where(
                    PullRequestLink.repository_key == link.repository_key,
                    PullRequestLink.head_sha == link.head_sha,
                    PullRequestLink.pr_number != link.pr_number,
                    PullRequestLink.state == "open",
                )
            )
        )
        .scalars()
        .all()
    )
    # Only the runs of PRs that get a `BMAD story` run hold one another.
    group = [link, *[other for other in others if await gets_story_check(session, other)]]
    views = {item.pr_number: await build_view(session, item, config_problems) for item in group}
    verdicts = {number: assess(view).conclusion for number, view in views.items()}
    for item in group:
        if item is not link and item.state != "open":
            continue
        strictest = max(
            ((n, c) for n, c in verdicts.items() if n != item.pr_number and views[n] is not None),
            key=lambda pair: STRICTNESS[pair[1]],
            default=None,
        )
        view = replace(views[item.pr_number], held_by=strictest)
        await _show(session, item, view)


async def _show(session: AsyncSession, link: PullRequestLink, view: StoryView) -> None:
    # The comment appears once the PR is linked, then is edited in place.
    linked = link.story_id is not None or link.reverted_by_pr is not None
    comment = pr_comment_body(view) if linked else None
    payload = check_run_payload(view, details_url=link.html_url)
    await show_on_pr(session, link, payload, check_run_target(link), f"pr:{link.pr_number}", comment)


async def show_on_pr(
    session: AsyncSession,
    link: PullRequestLink,
    payload: dict[str, object],
    target: str,
    external_id: str,
    comment: str | None,
) -> None:
    """The desired check run (`payload`, one per `target`) and, when given, the PR comment of `link`,
    through the outbox: the story's and the planning stage's views alike."""
    assert link.installation_id is not None
    wishes: list[tuple[str, str, dict[str, object]]] = [
        (KIND_CHECK_RUN, target, {**payload, "external_id": external_id})
    ]
    if comment is not None:
        wishes.append((KIND_PR_COMMENT, str(link.pr_number), {"body": comment}))
    await set_all_desired(session, installation_id=link.installation_id, repository=link.repository, wishes=wishes)


async def refresh_story_prs(session: AsyncSession, story_id: str, config_problems: tuple[str, ...] = ()) -> None:
    # In PR order, the order every unit of work writes outbox rows in (see lock_order).
    stmt = (
        select(PullRequestLink)
        .where(PullRequestLink.story_id == story_id)
        .order_by(PullRequestLink.repository_key, PullRequestLink.pr_number)
    )
    links = (await session.execute(stmt)).scalars().all()
    for link in links:
        await refresh_pr(session, link, config_problems)
