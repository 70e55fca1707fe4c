"""Pushes to a BMAD v6 repository: `sprint-status.yaml`, v6 story files and build specs on the default
branch, and the test architect's `gate-decision.json` on any branch.

- Each `development_status` entry is compared with the same story's entry in the push's parent
  (`before`), key by key, so several stories may change in one commit and statuses may jump. Stories are
  matched by (epic, story) number: a retitled story keeps its row.
- A new entry creates the story (DRAFT) with its title, description and acceptance criteria from
  `{key}.md` (also under `stories/`) or `spec-{key}.md` when the commit holds one.
- `ready-for-dev`, introduced by this push (the parent said something else), approves a DRAFT story when
  the pusher is a PM or ARCHITECT on the project. `in-progress`, `review` and `done` are what the
  repository says: audited, never moving the story. Pull requests and QA drive the lifecycle.
- A gate decision counts like a v4 gate file: from the story's QA only, once per file version.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gidgethub import BadRequest

from github_app.bmad.gate_decision import GateDecisionError, parse_gate_decision
from github_app.bmad.gate_file import GateDecision
from github_app.bmad.sprint_status import (
    MAX_BYTES as SPRINT_STATUS_MAX_BYTES,
)
from github_app.bmad.sprint_status import (
    SprintStatus,
    SprintStatusError,
    SprintStory,
    SprintStoryStatus,
    diff,
    parse_sprint_status,
)
from github_app.bmad.v6_story import MAX_BYTES as STORY_MAX_BYTES
from github_app.bmad.v6_story import V6StoryDocument, V6StoryError, is_v6_story_path, parse_v6_story
from github_app.db.enums import StoryStatus
from github_app.db.models import Story
from github_app.db.types import new_id, utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain import story_machine as sm
from github_app.handling import HandlerContext
from github_app.services.people import actor_for
from github_app.services.qa_decisions import QaDecision, record_qa_decision
from github_app.services.repo import FileTooLarge, RepoContext
from github_app.services.stories import apply_decision, audit, find_story, lock_story, publish_to_marketplace, snapshot

if TYPE_CHECKING:
    from github_app.services.pushes import Push, StoryFileReport

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
# A hostile or generated file must not turn one delivery into thousands of API calls and rows.
MAX_ENTRIES_PER_PUSH = 300
MAX_STORY_FILE_LOOKUPS = 50
STATUS_REPORTED = "sprint_status_reported"

S = SprintStoryStatus


async def v6_default_branch_push(
    ctx: HandlerContext,
    rc: RepoContext,
    push: Push,
    changes: dict[str, str],
    meta: dict[str, Any],
    report: StoryFileReport,
) -> None:
    layout = rc.layout
    if changes.get(layout.sprint_status_path) in ("added", "modified"):
        await _sprint_status(ctx, rc, push, layout.sprint_status_path, meta, report)
    for path, status in sorted(changes.items()):
        if status != "removed" and is_v6_story_path(path, layout.implementation_dir):
            await _story_file(ctx, rc, push, path, meta, report)


def push_after(fields: dict[str, Any]) -> str:
    return str(fields.get("commit_sha") or "")


async def merged_pull_request_author(rc: RepoContext, sha: str) -> str | None:
    """The author of the merged pull request that brought commit `sha` to the default branch, if one did.
    Its content was introduced by pushes to the PR's branch, not by whoever pressed merge."""
    if not sha:
        return None
    pulls: Any = await rc.gh.getitem(f"/repos/{rc.repository}/commits/{sha}/pulls")
    for pull in pulls if isinstance(pulls, list) else []:
        if isinstance(pull, dict) and pull.get("merged_at"):
            return str((pull.get("user") or {}).get("login") or "")
    return None


def title_from_slug(slug: str) -> str:
    words = slug.replace("_", "-").split("-")
    text = " ".join(word for word in words if word)
    return (text[:1].upper() + text[1:])[:300] or slug


async def _fetch_text(rc: RepoContext, path: str, ref: str, max_bytes: int) -> bytes | None:
    remote = await rc.fetch(path, ref, max_bytes=max_bytes)
    return remote.content if remote else None


async def _previous_status(rc: RepoContext, push: Push, path: str) -> SprintStatus | None:
    if push.before == ZERO_SHA:
        return None
    try:
        text = await _fetch_text(rc, path, push.before, SPRINT_STATUS_MAX_BYTES)
        return parse_sprint_status(text, path) if text is not None else None
    except (FileTooLarge, SprintStatusError):
        return None


async def _sprint_status(
    ctx: HandlerContext, rc: RepoContext, push: Push, path: str, meta: dict[str, Any], report: StoryFileReport
) -> None:
    try:
        text = await _fetch_text(rc, path, push.after, SPRINT_STATUS_MAX_BYTES)
        if text is None:
            return
        current = parse_sprint_status(text, path)
    except (FileTooLarge, SprintStatusError) as exc:
        log.warning("sprint status not usable", extra={"repository": rc.repository, "path": path, "error": str(exc)})
        report.refused.append(f"{path}: {exc}")
        return
    for refused in current.refused:
        report.refused.append(f"{path}: {refused.key}: {refused.reason}")
    changes = diff(await _previous_status(rc, push, path), current)
    if len(changes) > MAX_ENTRIES_PER_PUSH:
        skipped = ", ".join(f"{c.epic}.{c.story}" for c in changes[MAX_ENTRIES_PER_PUSH:][:20])
        report.refused.append(
            f"{path}: {len(changes)} stories changed in one push; the first {MAX_ENTRIES_PER_PUSH} were read, "
            f"push the rest again (skipped: {skipped}{', ...' if len(changes) > MAX_ENTRIES_PER_PUSH + 20 else ''})"
        )
        changes = changes[:MAX_ENTRIES_PER_PUSH]
    actor = await actor_for(ctx.session, rc.project, push.sender_login, push.sender_type)
    lookups = 0
    index = StoryFileIndex(rc, push.after)
    for change in changes:
        fields = {**meta, "path": path}
        if change.after is None:
            found = await find_story(ctx.session, rc.project.id, change.epic, change.story)
            if found is not None and change.before is not None:
                story = await lock_story(ctx.session, found.id)
                reason = f"{change.before.key} is no longer in {path}; the story is kept"
                gone = {**fields, "key": change.before.key, "reason": reason}
                audit(ctx.session, story, "sprint_entry_removed", actor, gone)
            continue
        entry = change.after
        doc = None
        existing = await find_story(ctx.session, rc.project.id, entry.epic, entry.story)
        retitled = existing is not None and change.before is not None and change.before.key != entry.key
        if (existing is None or retitled) and lookups < MAX_STORY_FILE_LOOKUPS:
            lookups += 1
            doc = await _story_document(index, entry.key, report)
        story = await _upsert_story(ctx, rc, entry, doc, actor, {**fields, "key": entry.key}, change.before)
        before_status = change.before.status if change.before else None
        if entry.status != before_status:
            await _status_said(ctx, rc, story, entry.status, before_status, actor, {**fields, "key": entry.key})


class StoryFileIndex:
    """The story files and specs present at one commit, listed once per push (two directory listings)
    so that a sprint planning that adds forty stories costs forty file reads, not a hundred and twenty."""

    def __init__(self, rc: RepoContext, ref: str) -> None:
        self.rc, self.ref = rc, ref
        self._names: set[str] | None = None

    async def paths_for(self, key: str) -> list[str]:
        folder = self.rc.layout.implementation_dir
        if self._names is None:
            self._names = set()
            for directory in (folder, f"{folder}/stories"):
                self._names |= await self._list(directory)
        candidates = (f"{folder}/{key}.md", f"{folder}/stories/{key}.md", f"{folder}/spec-{key}.md")
        return [path for path in candidates if path in self._names]

    async def _list(self, directory: str) -> set[str]:
        url = f"/repos/{self.rc.repository}/contents/{quote(directory)}?ref={quote(self.ref, safe='')}"
        try:
            entries: Any = await self.rc.gh.getitem(url)
        except BadRequest as exc:
            if exc.status_code == 404:
                return set()
            raise
        if not isinstance(entries, list):
            return set()
        return {str(e.get("path")) for e in entries if isinstance(e, dict) and e.get("type") == "file"}


async def _story_document(index: StoryFileIndex, key: str, report: StoryFileReport) -> V6StoryDocument | None:
    for path in await index.paths_for(key):
        try:
            text = await _fetch_text(index.rc, path, index.ref, STORY_MAX_BYTES)
            if text is not None:
                return parse_v6_story(path, text)
        except (FileTooLarge, V6StoryError) as exc:
            report.refused.append(f"{path}: {exc}")
            return None
    return None


async def _upsert_story(
    ctx: HandlerContext,
    rc: RepoContext,
    entry: SprintStory,
    doc: V6StoryDocument | None,
    actor: sm.Actor,
    fields: dict[str, Any],
    before: SprintStory | None,
) -> Story:
    session = ctx.session
    title = doc.title if doc else title_from_slug(entry.slug)
    now = utcnow()
    created = await insert_if_absent(
        session,
        Story.__table__,
        {
            "id": new_id(),
            "projectId": rc.project.id,
            "epicNumber": entry.epic,
            "storyNumber": entry.story,
            "title": title,
            "description": doc.description if doc else "",
            "acceptanceCriteria": doc.acceptance_criteria if doc else "",
            "storyFile": doc.path if doc else None,
            "status": StoryStatus.DRAFT.value,
            "createdAt": now,
            "updatedAt": now,
        },
        conflict=["projectId", "epicNumber", "storyNumber"],
    )
    found = await find_story(session, rc.project.id, entry.epic, entry.story)
    assert found is not None
    story = await lock_story(session, found.id)
    if created:
        reason = f"{entry.key} added to sprint status"
        audit(session, story, "story_created", actor, {**fields, "reason": reason}, None, StoryStatus.DRAFT)
        return story
    if before is not None and before.key != entry.key:
        story.title = title
        if doc is not None:
            story.description, story.acceptance_criteria, story.story_file = (
                doc.description,
                doc.acceptance_criteria,
                doc.path,
            )
        reason = f"sprint key {before.key} is now {entry.key}; the same story {entry.epic}.{entry.story}"
        audit(session, story, "sprint_key_changed", actor, {**fields, "previous_key": before.key, "reason": reason})
    return story


async def _status_said(
    ctx: HandlerContext,
    rc: RepoContext,
    story: Story,
    said: SprintStoryStatus,
    before: SprintStoryStatus | None,
    actor: sm.Actor,
    fields: dict[str, Any],
) -> None:
    """What a status written in the repository does: `ready-for-dev` asks for approval; anything else
    is on record only."""
    session = ctx.session
    if said is S.READY_FOR_DEV and story.status != StoryStatus.DRAFT:
        return  # approval of an approved story: the sprint entry and story file often say it twice
    if said is S.BACKLOG and story.status == StoryStatus.DRAFT:
        return  # a backlog entry is what a DRAFT story is
    if said is S.READY_FOR_DEV:
        decision = sm.decide(await snapshot(session, story), sm.StoryFileApproved(), actor)
        if isinstance(decision, sm.Transition):
            merged_from = await merged_pull_request_author(rc, push_after(fields))
            if merged_from is not None and merged_from.lower() != actor.github_login.lower():
                decision = sm.Refused(
                    f"ready-for-dev for story {story.epic_number}.{story.story_number} arrived by merging a pull "
                    f"request by @{merged_from}; an approval counts only from a PM's or architect's own push"
                )
        await apply_decision(session, story, decision, actor, {**fields, "said": said.value})
        if isinstance(decision, sm.Transition):
            await publish_to_marketplace(session, story, rc.project, rc.config.default_budget, fields)
        return
    reason = (
        f"{fields.get('path')} says {said.value}"
        + (f" (was {before.value})" if before else "")
        + f"; the story stays {StoryStatus(story.status)}: pull requests and QA move it"
    )
    meta = {**fields, "said": said.value, "was": before.value if before else None, "reason": reason}
    audit(session, story, STATUS_REPORTED, actor, meta)


async def _story_file(
    ctx: HandlerContext, rc: RepoContext, push: Push, path: str, meta: dict[str, Any], report: StoryFileReport
) -> None:
    session = ctx.session
    fields = {**meta, "path": path}
    try:
        text = await _fetch_text(rc, path, push.after, STORY_MAX_BYTES)
        if text is None:
            return
        doc = parse_v6_story(path, text)
    except (FileTooLarge, V6StoryError) as exc:
        report.refused.append(f"{path}: {exc}")
        return
    if doc.epic is None or doc.story is None:
        return  # a build spec with no tracking id belongs to no story
    for problem in doc.problems:
        report.warnings.append(f"{path}: {problem}")
    previous: SprintStoryStatus | None = None
    if push.before != ZERO_SHA:
        try:
            old = await _fetch_text(rc, path, push.before, STORY_MAX_BYTES)
            previous = parse_v6_story(path, old).status if old is not None else None
        except (FileTooLarge, V6StoryError):
            previous = None
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type)
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
    if created:
        audit(session, story, "story_created", actor, {**fields, "reason": f"{path} added"}, None, StoryStatus.DRAFT)
    else:
        changed = {
            name: value
            for name, value in (
                ("title", doc.title),
                ("description", doc.description),
                ("acceptance_criteria", doc.acceptance_criteria),
                ("story_file", path),
            )
            if value and getattr(story, name) != value
        }
        if changed:
            for name, value in changed.items():
                setattr(story, name, value)
            reason = f"{path} changed"
            audit(session, story, "story_updated", actor, {**fields, "reason": reason, "fields": sorted(changed)})
    if doc.status is not None and doc.status != previous:
        await _status_said(ctx, rc, story, doc.status, previous, actor, fields)


async def v6_gate_decision_push(
    ctx: HandlerContext, rc: RepoContext, push: Push, changes: dict[str, str], meta: dict[str, Any]
) -> None:
    path = rc.layout.gate_decision_path
    if changes.get(path) not in ("added", "modified") or "gate_decision" not in rc.config.qa_sources:
        return
    from github_app.services.pushes import gate_problem_on_branch

    session = ctx.session
    commit = push.last_commit_touching(path) or {}
    fields = {**meta, "path": path, "commit_sha": commit.get("id") or push.after}
    try:
        remote = await rc.fetch(path, push.after, max_bytes=64 * 1024)
        if remote is None:
            return
        found = parse_gate_decision(remote.content, path)
    except (FileTooLarge, GateDecisionError) as exc:
        await gate_problem_on_branch(ctx, rc, push, f"{path}: {exc}")
        return
    if found is None:
        log.info("gate decision about no story", extra={"repository": rc.repository, "path": path})
        return
    existing = await find_story(session, rc.project.id, found.epic, found.story)
    if existing is None:
        await gate_problem_on_branch(ctx, rc, push, f"{path}: story {found.key} does not exist in this project")
        return
    story = await lock_story(session, existing.id)
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type)
    if found.gate is None:
        reason = f"{path} says NOT_EVALUATED for {found.key}; nothing decided"
        audit(session, story, "gate_not_evaluated", actor, {**fields, "reason": reason})
        return
    # TEA writes WAIVED only on a human override; its rationale is the waiver's reason.
    waiver = found.gate is GateDecision.WAIVED and bool(found.rationale)
    accepted, why = sm.accepted_gate(found.gate, waiver, False, rc.config.accepted_gates)
    qa = QaDecision(
        gate=found.gate,
        accepted=accepted,
        why=why,
        source=path,
        version=remote.blob_sha,
        commit_sha=str(fields["commit_sha"]),
        decided_at=push.committed_at(path),
        reviewer_login=push.sender_login,
        notes=(f"rationale: {found.rationale}",) if found.rationale else (),
    )
    await record_qa_decision(session, rc, story, actor, qa, fields)
