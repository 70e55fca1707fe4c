"""Pull request events: link the PR to its story, move the story, show the result on the PR."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import sansio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import PullRequestLink
from github_app.db.types import from_github_time, utcnow
from github_app.db.upsert import upsert
from github_app.domain import story_machine as sm
from github_app.domain.linking import Ambiguous, Linked, Unlinked, link_pull_request
from github_app.handling import HandlerContext
from github_app.services.people import actor_for, user_by_login
from github_app.services.repo import RepoContext, load_repo_context
from github_app.services.reviews import review_outdated_by_head
from github_app.services.stories import (
    PrInfo,
    apply_decision,
    ensure_developer,
    find_story,
    lock_story,
    snapshot,
)
from github_app.services.views import refresh_pr, refresh_story_prs

log = logging.getLogger(__name__)

HANDLED_ACTIONS = frozenset(
    {"opened", "reopened", "synchronize", "ready_for_review", "converted_to_draft", "closed", "edited"}
)


async def _lock_link(session: AsyncSession, rc: RepoContext, pr: dict[str, Any]) -> PullRequestLink:
    key = rc.repository.lower()
    await upsert(
        session,
        PullRequestLink.__table__,  # type: ignore[arg-type]
        {
            "repository_key": key,
            "pr_number": pr["number"],
            "repository": rc.repository,
            "installation_id": rc.installation_id,
            "project_id": rc.project.id,
            "html_url": pr.get("html_url") or "",
            "author_login": (pr.get("user") or {}).get("login") or "",
            "head_sha": pr["head"]["sha"],
            "head_ref": pr["head"].get("ref") or "",
            "draft": bool(pr.get("draft")),
            "state": pr.get("state") or "open",
            "merged": False,
            "updated_at": utcnow(),
        },
        conflict=["repository_key", "pr_number"],
    )
    stmt = (
        select(PullRequestLink)
        .where(PullRequestLink.repository_key == key, PullRequestLink.pr_number == pr["number"])
        .with_for_update()
    )
    link = (await session.execute(stmt)).scalars().one()
    await session.refresh(link)
    return link


async def _changed_files(rc: RepoContext, number: int) -> list[str]:
    files = rc.gh.getiter(f"/repos/{rc.repository}/pulls/{number}/files?per_page=100")
    return [f["filename"] async for f in files]


async def _link_story(session: AsyncSession, rc: RepoContext, link: PullRequestLink, pr: dict[str, Any]) -> None:
    """Find the PR's story: title/body, branch name, then its changed files (only fetched if needed)."""
    args = {
        "title": pr.get("title") or "",
        "body": pr.get("body") or "",
        "head_branch": link.head_ref,
        "story_dir": rc.paths.story_dir,
        "branch_pattern": rc.config.branch_pattern,
    }
    result = link_pull_request(changed_files=[], **args)
    if isinstance(result, Unlinked):
        result = link_pull_request(changed_files=await _changed_files(rc, link.pr_number), **args)
    if isinstance(result, Linked):
        story = await find_story(session, rc.project.id, result.epic, result.story)
        if story is None:
            link.story_id, link.link_source = None, None
            link.link_problem = (
                f"this PR names story {result.epic}.{result.story}, which does not exist in "
                f"the project; story files live in {rc.paths.story_dir}/ on "
                f"{rc.default_branch}"
            )
            return
        link.story_id, link.link_source, link.link_problem = story.id, str(result.level), None
    else:
        assert isinstance(result, Ambiguous | Unlinked)
        link.story_id, link.link_source, link.link_problem = None, None, result.describe()


def _story_event(action: str, pr: dict[str, Any], ref: sm.PullRequestRef) -> sm.Event:
    if action == "closed":
        return sm.PrMerged(ref) if pr.get("merged") else sm.PrClosedUnmerged(ref)
    if action == "converted_to_draft":
        return sm.ConvertedToDraft(ref)
    if action == "ready_for_review":
        return sm.MarkedReady(ref)
    # opened, reopened, synchronize, edited: the PR as it is now. A synchronize that arrives before its
    # opened delivery links the PR all the same.
    return sm.DraftPrOpened(ref) if pr.get("draft") else sm.ReadyPrOpened(ref)


async def handle_pull_request(ctx: HandlerContext, event: sansio.Event) -> None:
    data = event.data
    action = data.get("action")
    sender = data.get("sender") or {}
    if action not in HANDLED_ACTIONS:
        return
    if sender.get("type") == "Bot":
        log.info("ignoring a bot's pull request event", extra={"sender": sender.get("login")})
        return
    rc = await load_repo_context(ctx, data)
    if rc is None:
        return
    session = ctx.session
    pr = data["pull_request"]
    link = await _lock_link(session, rc, pr)
    updated = from_github_time(pr.get("updated_at"))
    stale = link.pr_updated_at is not None and updated is not None and updated < link.pr_updated_at
    if not stale:
        link.pr_updated_at = updated or link.pr_updated_at
        link.head_sha, link.head_ref = pr["head"]["sha"], pr["head"].get("ref") or link.head_ref
        link.draft, link.state = bool(pr.get("draft")), pr.get("state") or link.state
        link.html_url = pr.get("html_url") or link.html_url
    # A merge is final whatever order the deliveries come in.
    if pr.get("merged") and not link.merged:
        link.merged, link.merged_at = True, from_github_time(pr.get("merged_at")) or utcnow()
    link.updated_at = utcnow()
    if link.story_id is None:
        await _link_story(session, rc, link, pr)
    elif not stale:
        await review_outdated_by_head(session, link, rc.config_problems)

    if link.story_id is not None and (not stale or action == "closed"):
        story = await lock_story(session, link.story_id)
        metadata = {
            "delivery_id": ctx.delivery_id,
            "event": f"pull_request.{action}",
            "repository": rc.repository,
            "pr_number": link.pr_number,
            "commit_sha": link.head_sha,
        }
        await ensure_developer(session, story, metadata)
        author_login = (pr.get("user") or {}).get("login") or ""
        author = await user_by_login(session, author_login)
        ref = sm.PullRequestRef(link.pr_number, author.id if author else None, author_login)
        actor = await actor_for(session, rc.project, sender.get("login") or "", sender.get("type"))
        before = story.status
        decision = sm.decide(await snapshot(session, story), _story_event(action, pr, ref), actor)
        await apply_decision(
            session, story, decision, actor, metadata, PrInfo(link.pr_number, link.html_url, author_login)
        )
        if isinstance(decision, sm.Refused):
            link.refusal = decision.reason
        elif isinstance(decision, sm.Transition | sm.Recorded):
            link.refusal = None
        await session.flush()
        if story.status != before:
            await refresh_story_prs(session, story.id, rc.config_problems)
    await session.flush()
    await refresh_pr(session, link, rc.config_problems)
