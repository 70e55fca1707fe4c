"""Push events: story files on the default branch create and update stories; QA gate files on any
branch record reviews and move stories."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gidgethub import sansio
from sqlalchemy import select

from github_app.bmad.gate_file import DEFAULT_MAX_BYTES, GateFileError, gate_id_from_path, is_gate_path, parse_gate_file
from github_app.bmad.story_file import (
    BmadFileError,
    StoryFileStatus,
    is_story_path,
    parse_story_file,
    story_id_from_path,
)
from github_app.db.app_tables import GateReview, PullRequestLink
from github_app.db.enums import StoryStatus
from github_app.db.models import Story
from github_app.db.types import from_github_time, new_id, utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain import story_machine as sm
from github_app.handling import HandlerContext
from github_app.outbox.enqueue import KIND_CHECK_RUN, set_desired
from github_app.presentation import story_files_check_payload
from github_app.services.people import actor_for
from github_app.services.repo import FileTooLarge, RepoContext, load_repo_context
from github_app.services.stories import (
    apply_decision,
    audit,
    find_story,
    lock_story,
    publish_to_marketplace,
    snapshot,
    story_state,
)
from github_app.services.v6_pushes import v6_default_branch_push, v6_gate_decision_push
from github_app.services.views import refresh_pr, refresh_story_prs

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
PUSH_COMMITS_CAP = 20  # GitHub lists at most 20 commits in a push payload
STORY_FILE_MAX_BYTES = 1024 * 1024


class Push:
    """The parts of a push payload the workflow reads, and the net effect on each file."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.ref: str = data.get("ref") or ""
        self.before: str = data.get("before") or ZERO_SHA
        self.after: str = data.get("after") or ZERO_SHA
        self.commits: list[dict[str, Any]] = data.get("commits") or []
        sender = data.get("sender") or {}
        self.sender_login: str = sender.get("login") or (data.get("pusher") or {}).get("name") or ""
        self.sender_type: str | None = sender.get("type")

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    def changes_from_commits(self) -> dict[str, str]:
        status: dict[str, str] = {}
        for commit in self.commits:
            for path in commit.get("added") or []:
                status[path] = "modified" if status.get(path) == "removed" else "added"
            for path in commit.get("modified") or []:
                status[path] = "added" if status.get(path) == "added" else "modified"
            for path in commit.get("removed") or []:
                status[path] = "removed"
        return status

    def last_commit_touching(self, path: str) -> dict[str, Any] | None:
        for commit in reversed(self.commits):
            if path in (commit.get("added") or []) + (commit.get("modified") or []):
                return commit
        return None

    def committed_at(self, path: str) -> datetime:
        commit = self.last_commit_touching(path) or self.data.get("head_commit") or {}
        return from_github_time(commit.get("timestamp")) or utcnow()


async def changed_files(rc: RepoContext, push: Push) -> dict[str, str]:
    """path -> added | modified | removed. A push of more than 20 commits lists only 20: then the
    compare API tells every changed file."""
    if len(push.commits) < PUSH_COMMITS_CAP or push.before == ZERO_SHA:
        return push.changes_from_commits()
    compare = await rc.gh.getitem(f"/repos/{rc.repository}/compare/{push.before}...{push.after}")
    changes: dict[str, str] = {}
    for f in compare.get("files") or []:
        if f.get("status") == "renamed" and f.get("previous_filename"):
            changes[f["previous_filename"]] = "removed"
        changes[f["filename"]] = (
            "removed" if f.get("status") == "removed" else ("added" if f.get("status") == "added" else "modified")
        )
    return changes


async def handle_push(ctx: HandlerContext, event: sansio.Event) -> None:
    push = Push(event.data)
    if push.sender_type == "Bot" or push.branch is None or push.after == ZERO_SHA:
        return
    rc = await load_repo_context(ctx, event.data)
    if rc is None:
        return
    changes = await changed_files(rc, push)
    meta = {
        "delivery_id": ctx.delivery_id,
        "event": "push",
        "repository": rc.repository,
        "commit_sha": push.after,
        "ref": push.ref,
    }
    if push.branch == rc.default_branch:
        report = StoryFileReport()
        for path, status in sorted(changes.items()):
            if is_story_path(path, rc.paths.story_dir):
                await _story_file(ctx, rc, push, path, status, meta, report)
        await v6_default_branch_push(ctx, rc, push, changes, meta, report)
        if report.refused or report.warnings:
            await set_desired(
                ctx.session,
                installation_id=rc.installation_id,
                repository=rc.repository,
                kind=KIND_CHECK_RUN,
                target=f"{push.after}:story-files",  # beside any PR check run on this commit
                payload=story_files_check_payload(push.after, report.refused, report.warnings),
            )
    if "gate_file" in rc.config.qa_sources:
        for path, status in sorted(changes.items()):
            if status != "removed" and is_gate_path(path, rc.paths.gate_dir):
                await _gate_file(ctx, rc, push, path, meta)
    await v6_gate_decision_push(ctx, rc, push, changes, meta)


@dataclass
class StoryFileReport:
    refused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def _story_file(
    ctx: HandlerContext,
    rc: RepoContext,
    push: Push,
    path: str,
    status: str,
    meta: dict[str, Any],
    report: StoryFileReport,
) -> None:
    session = ctx.session
    fields = {**meta, "path": path}
    if status == "removed":
        try:
            ident = story_id_from_path(path)
        except BmadFileError:
            ident = None
        story = await find_story(session, rc.project.id, *ident) if ident else None
        if story is not None:  # a story is never deleted with its file; the removal is on record
            story = await lock_story(session, story.id)
            audit(session, story, "story_file_removed", None, {**fields, "reason": "story file removed"})
            if story.story_file == path:
                story.story_file = None
        return
    try:
        remote = await rc.fetch(path, push.after, max_bytes=STORY_FILE_MAX_BYTES)
        if remote is None:
            return
        doc = parse_story_file(path, remote.content.decode("utf-8", errors="replace"))
    except (BmadFileError, FileTooLarge) as exc:
        log.warning("story file not usable", extra={"repository": rc.repository, "path": path, "error": str(exc)})
        report.refused.append(f"{path}: {exc}")
        return
    for problem in doc.problems:
        log.warning("story file problem", extra={"repository": rc.repository, "path": path, "problem": problem})
        report.warnings.append(f"{path}: {problem}")
    now = utcnow()
    created = await insert_if_absent(
        session,
        Story.__table__,
        {
            "id": new_id(),
            "projectId": rc.project.id,
            "epicNumber": doc.epic,
            "storyNumber": doc.story,
            "title": doc.title,
            "description": doc.description,
            "acceptanceCriteria": doc.acceptance_criteria,
            "storyFile": path,
            "status": StoryStatus.DRAFT.value,
            "createdAt": now,
            "updatedAt": now,
        },
        conflict=["projectId", "epicNumber", "storyNumber"],
    )
    found = await find_story(session, rc.project.id, doc.epic, doc.story)
    assert found is not None
    story = await lock_story(session, found.id)
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type)
    if created:
        audit(
            session,
            story,
            "story_created",
            actor,
            {**fields, "reason": f"story file {path} added"},
            None,
            StoryStatus.DRAFT,
        )
    else:
        changed = {
            name: value
            for name, value in (
                ("title", doc.title),
                ("description", doc.description),
                ("acceptance_criteria", doc.acceptance_criteria),
                ("story_file", path),
            )
            if getattr(story, name) != value
        }
        if changed:
            for name, value in changed.items():
                setattr(story, name, value)
            audit(
                session,
                story,
                "story_updated",
                actor,
                {**fields, "reason": f"story file {path} changed", "fields": sorted(changed)},
            )
    if doc.status is StoryFileStatus.APPROVED and story.status == StoryStatus.DRAFT:
        decision = sm.decide(await snapshot(session, story), sm.StoryFileApproved(), actor)
        await apply_decision(session, story, decision, actor, fields)
        if isinstance(decision, sm.Transition):
            budget = rc.config.default_budget
            await publish_to_marketplace(session, story, rc.project, budget, fields)


async def gate_problem_on_branch(ctx: HandlerContext, rc: RepoContext, push: Push, problem: str) -> None:
    """A gate file that names no usable story is reported on the PRs of the branch it was pushed to."""
    links = (
        (
            await ctx.session.execute(
                select(PullRequestLink).where(
                    PullRequestLink.repository_key == rc.repository.lower(),
                    PullRequestLink.head_ref == push.branch,
                    PullRequestLink.state == "open",
                )
            )
        )
        .scalars()
        .all()
    )
    for link in links:
        link.gate_problem = problem
        await refresh_pr(ctx.session, link, rc.config_problems)


async def _gate_file(ctx: HandlerContext, rc: RepoContext, push: Push, path: str, meta: dict[str, Any]) -> None:
    session = ctx.session
    commit = push.last_commit_touching(path) or {}
    fields = {**meta, "path": path, "commit_sha": commit.get("id") or push.after}
    try:
        remote = await rc.fetch(path, push.after, max_bytes=DEFAULT_MAX_BYTES)
        if remote is None:
            return
        doc = parse_gate_file(path, remote.content)
    except (GateFileError, FileTooLarge) as exc:
        problem = f"{path}: {exc}"
        log.warning("gate file refused", extra={"repository": rc.repository, "path": path, "error": str(exc)})
        try:
            ident = gate_id_from_path(path)
        except BmadFileError:
            ident = None
        story = await find_story(session, rc.project.id, *ident) if ident else None
        if story is None:
            await gate_problem_on_branch(ctx, rc, push, problem)
            return
        story = await lock_story(session, story.id)
        (await story_state(session, story.id)).gate_problem = problem
        audit(session, story, "gate_invalid", None, {**fields, "reason": problem})
        await refresh_story_prs(session, story.id, rc.config_problems)
        return
    found = await find_story(session, rc.project.id, doc.epic, doc.story)
    if found is None:
        await gate_problem_on_branch(
            ctx, rc, push, f"{path}: story {doc.epic}.{doc.story} does not exist in this project"
        )
        return
    story = await lock_story(session, found.id)
    state = await story_state(session, story.id)
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type)
    now = utcnow()
    expired = doc.is_expired(datetime.now(UTC))
    accepted, why = sm.accepted_gate(doc.gate, doc.waiver_active, expired, rc.config.accepted_gates)
    decision = sm.decide(await snapshot(session, story), sm.GateRecorded(doc.gate, accepted), actor)
    if isinstance(decision, sm.Refused):
        # An unauthorized gate changes no story field: only the refusal is on record and on the PR.
        await apply_decision(session, story, decision, actor, fields)
        state.gate_problem = f"{path}: {decision.reason}"
        await refresh_story_prs(session, story.id, rc.config_problems)
        return
    committed_at = push.committed_at(path)
    new_review = await insert_if_absent(
        session,
        GateReview.__table__,
        {
            "story_id": story.id,
            "path": path,
            "blob_sha": remote.blob_sha,
            "commit_sha": fields["commit_sha"],
            "decision": doc.gate.value,
            "accepted": accepted,
            "reason": why,
            "reviewer_login": push.sender_login,
            "committed_at": committed_at,
            "recorded_at": now,
        },
        conflict=["story_id", "path", "blob_sha"],
    )
    if not new_review:
        return  # this version of the gate file is already recorded: a review counts once
    story.qa_review_count += 1
    story.qa_gate_path, story.qa_gate_status, story.qa_reviewed_at = path, doc.gate.value, now
    state.gate_problem = None
    if state.gate_committed_at is not None and committed_at < state.gate_committed_at:
        audit(
            session,
            story,
            "gate_superseded",
            actor,
            {**fields, "reason": f"gate {doc.gate} was committed before the gate in force; recorded only"},
        )
        await refresh_story_prs(session, story.id, rc.config_problems)
        return
    state.gate_committed_at = committed_at
    notes = [why]
    if doc.waiver_active and doc.waiver_reason:
        notes.append(f"waiver: {doc.waiver_reason}")
    if doc.expires is not None:
        notes.append(f"{'expired' if expired else 'expires'} {doc.expires:%Y-%m-%d}")
    state.gate_note = "; ".join(notes)
    await apply_decision(session, story, decision, actor, {**fields, "gate": doc.gate.value, "accepted": accepted})
    await refresh_story_prs(session, story.id, rc.config_problems)
