"""Pull requests and reviews that deliver a planning stage's documents.

While a project is PLANNING, a pull request that adds or changes the current stage's documents is that
stage's deliverable when its author is the expert of the accepted bid on the stage's Opportunity (by
GitHub account id, as services.people binds it). Anyone else's PR touching stage documents is refused
on its `BMAD stage` check run, with the reason, and makes no Deliverable. The client (or a PM or
architect of the project the client names in `stage_reviewers`) reviews it on GitHub; the stage
completes once the PR is merged into the default branch and approved at the merged head.

GitHub first, before any row lock: the PR's files, and when the event may complete the stage, the stage
files at the merge commit with their sizes (contents API), which become Documents.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any
from urllib.parse import quote

from gidgethub import BadRequest, sansio
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.planning import DOCUMENT_TYPES, StageDocuments
from github_app.db.app_tables import PullRequestLink, StagePullRequest
from github_app.db.types import from_github_time
from github_app.domain import stage_machine as st
from github_app.domain import story_machine as sm
from github_app.domain.vocabulary import ProjectStatus
from github_app.handling import HandlerContext
from github_app.services import stages
from github_app.services.decisions import StageScope, apply_stage_decision
from github_app.services.people import actor_for, identify
from github_app.services.repo import RepoContext, load_repo_context
from github_app.services.stage_views import refresh_stage_pr

log = logging.getLogger(__name__)

PR_ACTIONS = frozenset({"opened", "reopened", "synchronize", "ready_for_review", "closed"})
MAX_FILES_PER_STAGE = 300  # Documents registered for one stage's merge; a sharded PRD has tens
MAX_FOLDER_DEPTH = 4


async def _pr_paths(rc: RepoContext, number: int) -> list[str]:
    paths: list[str] = []
    async for f in rc.gh.getiter(f"/repos/{rc.repository}/pulls/{number}/files?per_page=100"):
        if f.get("status") != "removed":
            paths.append(str(f.get("filename") or ""))
        if len(paths) >= 3000:  # GitHub lists at most 3000 files of a PR
            break
    return paths


async def _contents(rc: RepoContext, path: str, ref: str) -> Any:
    try:
        return await rc.gh.getitem(f"/repos/{rc.repository}/contents/{quote(path)}?ref={quote(ref, safe='')}")
    except BadRequest as exc:
        if exc.status_code == 404:
            return None
        raise


async def stage_files_at(rc: RepoContext, docs: StageDocuments, ref: str) -> tuple[stages.StageDocument, ...]:
    """The stage's files at commit `ref` with their sizes in bytes, as GitHub's contents API lists them
    (never as the PR's text says)."""
    found: dict[str, int] = {}

    async def walk(folder: str, depth: int) -> None:
        listing = await _contents(rc, folder, ref)
        if not isinstance(listing, list):
            return
        for entry in listing:
            if len(found) >= MAX_FILES_PER_STAGE:
                return
            if entry.get("type") == "file":
                found[str(entry["path"])] = int(entry.get("size") or 0)
            elif entry.get("type") == "dir" and depth < MAX_FOLDER_DEPTH:
                await walk(str(entry["path"]), depth + 1)

    for path in docs.files:
        item = await _contents(rc, path, ref)
        if isinstance(item, dict) and item.get("type") == "file":
            found[path] = int(item.get("size") or 0)
    for folder in docs.folders:
        await walk(folder, 0)
    for pattern in docs.patterns:
        parent, _, name = pattern.rpartition("/")
        listing = await _contents(rc, parent, ref) if parent else None
        for entry in listing if isinstance(listing, list) else []:
            if entry.get("type") == "file" and fnmatch.fnmatchcase(str(entry.get("name") or ""), name):
                found[str(entry["path"])] = int(entry.get("size") or 0)
    return tuple(stages.StageDocument(path, size) for path, size in sorted(found.items()))


def _judged(project_status: str, current_stage: str | None) -> bool:
    """Whether stage documents in new PRs are judged now: during planning, and on a cancelled project
    (whose PRs are refused)."""
    if project_status == ProjectStatus.CANCELLED:
        return True
    return project_status == ProjectStatus.PLANNING and current_stage in DOCUMENT_TYPES


async def _scope(
    session: AsyncSession, rc: RepoContext, stage: str, number: int
) -> tuple[StagePullRequest, Any, st.StageSnapshot]:
    opportunity = await stages.stage_opportunity(session, rc.project.id, stage)
    if opportunity is not None:
        opportunity = await stages.lock_opportunity(session, opportunity.id)
    row = await stages.stage_pr_row(
        session, rc.repository, number, rc.project.id, stage, opportunity.id if opportunity else None
    )
    if row.opportunity_id is None and opportunity is not None:
        row.opportunity_id = opportunity.id
    row.documents = rc.layout.planning.of(stage).describe()
    reviewers = await stages.named_reviewers(session, rc.project, rc.config.stage_reviewers)
    before = await stages.snapshot(session, rc.project, stage, opportunity, reviewers)
    return row, opportunity, before


async def handle_stage_pull_request(ctx: HandlerContext, event: sansio.Event) -> None:
    data = event.data
    action = data.get("action")
    if action not in PR_ACTIONS:
        return
    pr = data["pull_request"]
    sender = data.get("sender") or {}
    merged = action == "closed" and bool(pr.get("merged"))
    if (sender.get("type") == "Bot" or str(sender.get("login") or "").endswith("[bot]")) and not merged:
        return
    rc = await load_repo_context(ctx, data)
    if rc is None:
        return
    session = ctx.session
    number = int(pr["number"])
    known = await session.get(StagePullRequest, (rc.repository.lower(), number))
    project = rc.project
    current = str(project.current_stage) if project.current_stage else None
    if known is None and not _judged(str(project.status), current):
        return
    touched = rc.layout.planning.stages_touched(await _pr_paths(rc, number))
    if known is None and not touched:
        return
    stage = known.stage if known is not None else (current if current in touched else touched[0])
    base = (pr.get("base") or {}).get("ref") or rc.default_branch
    into = None if base == rc.default_branch or base in rc.config.release_branches else base
    # GitHub names the merge commit of a merged PR; should it not, the merged head holds the PR's files.
    merge_sha = (pr.get("merge_commit_sha") or pr["head"]["sha"]) if merged and into is None else None
    documents = None
    if merge_sha:
        documents = await stage_files_at(rc, rc.layout.planning.of(stage), str(merge_sha))

    # The story handler before this one kept the PR's freshest known state: a late delivery (an opened
    # after its closed, an older head) never speaks for the PR as it is now.
    link = await session.get(PullRequestLink, (rc.repository.lower(), number))
    # A merge names the head it merged; anything else is judged against the freshest head known.
    head = pr["head"]["sha"] if merged or link is None else link.head_sha
    closed_now = link is not None and link.state == "closed" and not link.merged
    if action != "closed" and (pr.get("draft") or closed_now):
        # A draft is work in progress, not a submission; marking it ready submits it.
        if known is not None:
            await refresh_stage_pr(session, known)
        return
    author_login = (pr.get("user") or {}).get("login") or ""
    author = await identify(session, author_login, (pr.get("user") or {}).get("id"))
    ref = sm.PullRequestRef(number, author.user.id if author.user else None, author_login, author.problem, head)
    row, opportunity, before = await _scope(session, rc, stage, number)
    if merge_sha:
        row.merge_sha = str(merge_sha)
    actor = await actor_for(session, project, sender.get("login") or "", sender.get("type"), sender.get("id"))
    stage_event: st.StageEvent
    if action == "closed":
        stage_event = st.StagePrMerged(ref, into) if merged else st.StagePrClosed(ref)
    else:
        other = tuple(s for s in touched if s != stage)
        stage_event = st.StagePrSubmitted(ref, new_commits=action == "synchronize", other_stages=other)
    decision = st.decide_stage(before, stage_event, actor)
    metadata = {
        "delivery_id": ctx.delivery_id,
        "event": f"pull_request.{action}",
        "repository": rc.repository,
        "pr_number": number,
        "commit_sha": head,
    }
    scope = StageScope(project, opportunity, row, rc.repository, DOCUMENT_TYPES[stage], row.merge_sha, documents)
    info = stages.PrInfo(number, pr.get("html_url") or "", author_login)
    await apply_stage_decision(session, before, decision, actor, metadata, scope, info)
    if isinstance(decision, sm.NoChange):
        await session.flush()
        await refresh_stage_pr(session, row)


REVIEW_STATES = {"approved": True, "changes_requested": False}


async def handle_stage_review(ctx: HandlerContext, event: sansio.Event) -> None:
    data = event.data
    action = data.get("action")
    if action not in ("submitted", "dismissed"):
        return
    review = data.get("review") or {}
    pr = data.get("pull_request") or {}
    reviewer = review.get("user") or {}
    state = str(review.get("state") or "").lower()
    if (action == "submitted" and state not in REVIEW_STATES) or reviewer.get("type") == "Bot":
        return
    rc = await load_repo_context(ctx, data)
    if rc is None:
        return
    session = ctx.session
    number = pr.get("number")
    if not isinstance(number, int):
        return
    known = await session.get(StagePullRequest, (rc.repository.lower(), number))
    if known is None or known.deliverable_id is None:
        return
    stage = known.stage
    # The stage files at the merge commit, before any lock, when this approval may complete the stage.
    documents = None
    if action == "submitted" and REVIEW_STATES[state] and known.merge_sha and known.merged_head:
        documents = await stage_files_at(rc, rc.layout.planning.of(stage), known.merge_sha)
    link = await session.get(PullRequestLink, (rc.repository.lower(), number))
    row, opportunity, before = await _scope(session, rc, stage, number)
    # The PR's head as the newest event shows it (this delivery's own copy of the PR may be newer).
    head = link.head_sha if link is not None else ""
    payload_head = (pr.get("head") or {}).get("sha")
    payload_updated = from_github_time(pr.get("updated_at"))
    if payload_head and (
        link is None or link.pr_updated_at is None or (payload_updated and payload_updated >= link.pr_updated_at)
    ):
        head = payload_head
    commit = str(review.get("commit_id") or "")
    stage_event: st.StageEvent
    if action == "dismissed":
        # A dismissal is a fact, whoever performs it: the approval no longer stands.
        sender = data.get("sender") or {}
        actor = await actor_for(session, rc.project, sender.get("login") or "", sender.get("type"), sender.get("id"))
        stage_event = st.StageReviewDismissed(number, commit)
    else:
        # The review's author is who speaks (authenticated, by account id), not whoever sent the event.
        login, kind, account = reviewer.get("login") or "", reviewer.get("type"), reviewer.get("id")
        actor = await actor_for(session, rc.project, login, kind, account)
        body = str(review.get("body") or "")
        stage_event = st.StageReviewed(number, commit, str(head or ""), REVIEW_STATES[state], body)
    decision = st.decide_stage(before, stage_event, actor)
    metadata = {
        "delivery_id": ctx.delivery_id,
        "event": f"pull_request_review.{action}",
        "repository": rc.repository,
        "pr_number": number,
        "commit_sha": review.get("commit_id"),
        "review_url": review.get("html_url"),
    }
    if isinstance(decision, st.ReviewNotCounted):
        row.review_problem = decision.reason
        stages.stage_audit(
            session,
            rc.project.id,
            stage,
            stages.REVIEW_NOT_COUNTED,
            actor,
            {**metadata, "reason": decision.reason},
            opportunity_id=opportunity.id if opportunity else None,
            deliverable_id=row.deliverable_id,
        )
        await session.flush()
        await refresh_stage_pr(session, row)
        return
    scope = StageScope(rc.project, opportunity, row, rc.repository, DOCUMENT_TYPES[stage], row.merge_sha, documents)
    await apply_stage_decision(session, before, decision, actor, metadata, scope, None)
