"""Pull request events: link the PR to its story, move the story, show the result on the PR."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import sansio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.gate_file import is_gate_path
from github_app.bmad.story_file import is_story_path
from github_app.db.app_tables import PullRequestLink
from github_app.db.enums import Role
from github_app.db.models import Story
from github_app.db.queries import current_one
from github_app.db.types import from_github_time, utcnow
from github_app.db.upsert import upsert
from github_app.domain import story_machine as sm
from github_app.domain.linking import Ambiguous, Linked, LinkResult, Unlinked, link_pull_request
from github_app.domain.reverts import reverted_pr
from github_app.handling import HandlerContext
from github_app.services.decisions import StoryScope, apply_decision
from github_app.services.lock_order import lock_for_pull_request
from github_app.services.people import actor_for, identify
from github_app.services.provenance import record_origin
from github_app.services.repo import RepoContext, load_repo_context
from github_app.services.stories import (
    PrInfo,
    audit,
    ensure_developer,
    find_story,
    lock_story,
    snapshot,
)
from github_app.services.v6_pushes import v6_file_limit
from github_app.services.views import refresh_pr

log = logging.getLogger(__name__)

HANDLED_ACTIONS = frozenset(
    {
        "opened",
        "reopened",
        "synchronize",
        "ready_for_review",
        "converted_to_draft",
        "closed",
        "edited",
        "review_requested",
    }
)
# The actions after which a PR from a fork shows content whose pushes the app never saw.
_NEW_CONTENT = frozenset({"opened", "reopened", "synchronize"})


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
            "base_ref": (pr.get("base") or {}).get("ref"),
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
    link = await current_one(session, stmt)
    return link


async def _pr_files(rc: RepoContext, number: int) -> list[dict[str, Any]]:
    return [f async for f in rc.gh.getiter(f"/repos/{rc.repository}/pulls/{number}/files?per_page=100")]


def _link_args(rc: RepoContext, pr: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": pr.get("title") or "",
        "body": pr.get("body") or "",
        "head_branch": (pr.get("head") or {}).get("ref") or "",
        "story_dir": rc.paths.story_dir,
        "branch_pattern": rc.config.branch_pattern,
    }


def _is_fork(data: dict[str, Any]) -> bool:
    head_repo = (data["pull_request"].get("head") or {}).get("repo") or {}
    base = (data.get("repository") or {}).get("full_name") or ""
    return str(head_repo.get("full_name") or "").lower() != base.lower()


async def _apply_link(session: AsyncSession, rc: RepoContext, link: PullRequestLink, result: LinkResult) -> None:
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


def _is_qa(story: Story, actor: sm.Actor) -> bool:
    """The sender reviews this story: its commits on the PR are QA's, not a resubmission."""
    if actor.user_id is None or actor.user_id == story.assigned_dev_id:
        return False
    if story.assigned_qa_id is not None:
        return actor.user_id == story.assigned_qa_id
    return Role.QA in actor.roles


def _story_event(
    action: str, data: dict[str, Any], ref: sm.PullRequestRef, story: Story, sender: sm.Actor, into: str | None
) -> sm.Event | None:
    """The story event of a PR delivery; None when it says nothing about the story."""
    pr = data["pull_request"]
    if action == "closed":
        if pr.get("merged"):
            return sm.PrMerged(ref, from_github_time(pr.get("merged_at")), into)
        return sm.PrClosedUnmerged(ref)
    if action == "converted_to_draft":
        return sm.ConvertedToDraft(ref)
    if action == "ready_for_review":
        return sm.MarkedReady(ref)
    if action == "review_requested":
        # The developer asking for review again resubmits; anyone else's request changes nothing.
        if pr.get("draft") or sender.github_login.lower() != ref.author_login.lower():
            return None
        return sm.MarkedReady(ref)
    if action == "synchronize":
        if _is_qa(story, sender):
            return sm.QaCommitted(ref, data.get("before"))
        return sm.NewCommits(ref, ready=not pr.get("draft"))
    # opened, reopened, edited: the PR as it is now.
    return sm.DraftPrOpened(ref) if pr.get("draft") else sm.ReadyPrOpened(ref)


async def handle_pull_request(ctx: HandlerContext, event: sansio.Event) -> None:
    data = event.data
    action = data.get("action")
    sender = data.get("sender") or {}
    if action not in HANDLED_ACTIONS:
        return
    pr = data["pull_request"]
    sender_login = sender.get("login") or ""
    is_bot = sender.get("type") == "Bot" or sender_login.endswith("[bot]")
    # A merge is a fact whoever performs it (a merge queue, an auto-merge bot), and so is a new head a
    # bot pushed (QA did not review it); a bot is never an actor: the machine ignores what it does.
    if is_bot and not (action == "closed" and pr.get("merged")) and action != "synchronize":
        log.info("ignoring a bot's pull request event", extra={"sender": sender_login})
        return
    rc = await load_repo_context(ctx, data)
    if rc is None:
        return
    session = ctx.session
    author_login = (pr.get("user") or {}).get("login") or ""

    # GitHub first, before any row lock: the PR's files, when linking needs them or the PR comes from a
    # fork (its pushes never reach the app, so its story and gate file versions are recorded here).
    reverts = reverted_pr(pr.get("title") or "", pr.get("body") or "", pr["head"].get("ref") or "", rc.repository)
    text_link = link_pull_request(changed_files=[], **_link_args(rc, pr))
    needs_files = isinstance(text_link, Unlinked) and reverts is None
    if needs_files:  # only a PR not linked yet is linked by its files
        known = await session.get(PullRequestLink, (rc.repository.lower(), pr["number"]))
        needs_files = known is None or known.story_id is None
    fork = _is_fork(data)
    files: list[dict[str, Any]] | None = None
    if needs_files or (fork and action in _NEW_CONTENT):
        files = await _pr_files(rc, pr["number"])
    if fork and files is not None and action in _NEW_CONTENT:
        for f in files:
            name, blob = str(f.get("filename") or ""), str(f.get("sha") or "")
            if (
                blob
                and f.get("status") != "removed"
                and (
                    is_gate_path(name, rc.paths.gate_dir)
                    or is_story_path(name, rc.paths.story_dir)
                    or v6_file_limit(name, rc.layout) is not None
                )
            ):
                await record_origin(
                    session,
                    repository=rc.repository,
                    blob_sha=blob,
                    path=name,
                    introducer=author_login,
                    introducer_id=(pr.get("user") or {}).get("id"),
                    commit_sha=pr["head"]["sha"],
                    ref=f"pull/{pr['number']}",
                    source="pull_request",
                )

    # Locks in one order for every delivery: the story first, then this PR's link.
    await lock_for_pull_request(session, rc, pr)
    link = await _lock_link(session, rc, pr)
    updated = from_github_time(pr.get("updated_at"))
    stale = link.pr_updated_at is not None and updated is not None and updated < link.pr_updated_at
    previous_base = link.base_ref
    if not stale:
        link.pr_updated_at = updated or link.pr_updated_at
        if link.head_sha != pr["head"]["sha"] or link.head_updated_at is None:
            link.head_updated_at = updated
        link.head_sha, link.head_ref = pr["head"]["sha"], pr["head"].get("ref") or link.head_ref
        link.base_ref = (pr.get("base") or {}).get("ref") or link.base_ref
        link.draft, link.state = bool(pr.get("draft")), pr.get("state") or link.state
        link.html_url = pr.get("html_url") or link.html_url
    # A merge is final whatever order the deliveries come in.
    if pr.get("merged") and not link.merged:
        link.merged, link.merged_at = True, from_github_time(pr.get("merged_at")) or utcnow()
    link.updated_at = utcnow()
    scope = StoryScope(rc.project, rc.config.default_budget, rc.config_problems)
    metadata = {
        "delivery_id": ctx.delivery_id,
        "event": f"pull_request.{action}",
        "repository": rc.repository,
        "pr_number": link.pr_number,
        "commit_sha": pr["head"]["sha"],
    }

    if reverts is not None:
        # A revert is never new work on a story: it records the revert on the PR it reverts.
        link.reverts_pr = reverts
        link.story_id, link.link_source = None, None
        link.link_problem = f"this PR reverts PR #{reverts}; a revert is not work on a story"
        if link.merged:
            await _record_revert(session, rc, link, reverts, metadata)
        await session.flush()
        await refresh_pr(session, link, rc.config_problems)
        return

    newly_linked = False
    closed_unmerged = (pr.get("state") == "closed" or link.state == "closed") and not link.merged
    if link.story_id is None and not (closed_unmerged and action != "closed"):
        # A closed, unmerged PR is not bound to a story by an edit of its title.
        result = text_link
        if isinstance(result, Unlinked) and files is not None:
            result = link_pull_request(changed_files=[f["filename"] for f in files], **_link_args(rc, pr))
        await _apply_link(session, rc, link, result)
        newly_linked = link.story_id is not None

    if link.story_id is not None and (not stale or action == "closed"):
        story = await lock_story(session, link.story_id)
        await ensure_developer(session, story, metadata)
        author = await identify(session, author_login, (pr.get("user") or {}).get("id"))
        ref = sm.PullRequestRef(
            link.pr_number,
            author.user.id if author.user else None,
            author_login,
            author_problem=author.problem,
            head_sha=pr["head"]["sha"],
        )
        actor = await actor_for(session, rc.project, sender_login, sender.get("type"), sender.get("id"))
        if action == "edited" and previous_base is not None and link.base_ref != previous_base:
            audit(
                session,
                story,
                "pr_retargeted",
                actor,
                {**metadata, "reason": f"PR #{link.pr_number} now merges into {link.base_ref}", "base": link.base_ref},
            )
        base = (pr.get("base") or {}).get("ref", rc.default_branch)
        into = None if base == rc.default_branch or base in rc.config.release_branches else base
        story_event = (
            None if action == "edited" and not newly_linked else _story_event(action, data, ref, story, actor, into)
        )
        if story_event is not None and not (closed_unmerged and action != "closed"):
            decision = sm.decide(await snapshot(session, story), story_event, actor)
            if isinstance(decision, sm.Refused):
                link.refusal = decision.reason
            elif isinstance(decision, sm.Transition | sm.Recorded):
                link.refusal = None
            await session.flush()
            await apply_decision(
                session, story, decision, actor, metadata, scope, PrInfo(link.pr_number, link.html_url, author_login)
            )
            if not isinstance(decision, sm.NoChange):
                return  # its subscribers brought every PR of the story up to date, this one included
    await session.flush()
    await refresh_pr(session, link, rc.config_problems)


async def _record_revert(
    session: AsyncSession, rc: RepoContext, link: PullRequestLink, reverted: int, metadata: dict[str, Any]
) -> None:
    original = await session.get(PullRequestLink, (rc.repository.lower(), reverted))
    if original is None or original.reverted_by_pr == link.pr_number:
        return
    original.reverted_by_pr = link.pr_number
    if original.story_id is not None:
        story = await lock_story(session, original.story_id)
        reason = (
            f"PR #{reverted} was reverted by PR #{link.pr_number}; the story stays {story.status} "
            f"(a completed story is final)"
        )
        audit(session, story, "pr_reverted", None, {**metadata, "reason": reason, "reverted_pr": reverted})
    await session.flush()
    await refresh_pr(session, original, rc.config_problems)
