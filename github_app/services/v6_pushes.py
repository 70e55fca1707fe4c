"""Pushes to a BMAD v6 repository: `sprint-status.yaml`, v6 story files and build specs on the default
branch, and the test architect's `gate-decision.json` on any branch.

- Each `development_status` entry is compared with the same story's entry in the push's parent
  (`before`), key by key, so several stories may change in one commit and statuses may jump. Stories are
  matched by (epic, story) number: a retitled story keeps its row.
- A new entry creates the story (DRAFT) with its title, description and acceptance criteria from
  `{key}.md` (also under `stories/`) or `spec-{key}.md` when the commit holds one.
- An entry (or a story file) becoming `ready-for-dev` approves a DRAFT story when a PM or ARCHITECT on
  the project introduced that version of the file: its first push, never whoever merged it (see
  `services.provenance`). `in-progress`, `review` and `done` are what the repository says: audited,
  never moving the story. Pull requests and QA drive the lifecycle.

Every GitHub read happens in `read_v6`, before any row lock; `apply_*` only write rows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

from gidgethub import BadRequest
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.gate_decision import MAX_BYTES as GATE_DECISION_MAX_BYTES
from github_app.bmad.layout import BmadLayout
from github_app.bmad.sprint_status import MAX_BYTES as SPRINT_STATUS_MAX_BYTES
from github_app.bmad.sprint_status import (
    SprintStatus,
    SprintStatusError,
    SprintStory,
    SprintStoryStatus,
    StoryChange,
    diff,
    parse_sprint_status,
)
from github_app.bmad.v6_story import MAX_BYTES as STORY_MAX_BYTES
from github_app.bmad.v6_story import V6StoryDocument, V6StoryError, is_v6_story_path, parse_v6_story
from github_app.bounded import clean_text
from github_app.db.enums import StoryStatus
from github_app.db.models import Story
from github_app.domain import story_machine as sm
from github_app.handling import HandlerContext
from github_app.services.decisions import StoryScope, apply_decision
from github_app.services.people import actor_for
from github_app.services.provenance import carried_note
from github_app.services.push_event import ZERO_SHA, Fetched, Push, StoryFileReport
from github_app.services.repo import FileTooLarge, RepoContext
from github_app.services.stories import audit, draft_story, find_story, lock_story, snapshot

log = logging.getLogger(__name__)

# A hostile or generated file must not turn one delivery into thousands of API calls and rows.
MAX_ENTRIES_PER_PUSH = 300
MAX_STORY_FILE_LOOKUPS = 50
STATUS_REPORTED = "sprint_status_reported"

S = SprintStoryStatus

Reader = Callable[[str, str, int], Awaitable[Fetched]]


def v6_file_limit(path: str, layout: BmadLayout) -> int | None:
    """The size limit of a v6 file whose versions the app tracks, or None for any other path."""
    if path == layout.sprint_status_path:
        return SPRINT_STATUS_MAX_BYTES
    if path == layout.gate_decision_path:
        return GATE_DECISION_MAX_BYTES
    if is_v6_story_path(path, layout.implementation_dir):
        return STORY_MAX_BYTES
    return None


@dataclass
class SprintRead:
    """sprint-status.yaml as the pushed commit has it, its entries' changes against the parent, and the
    story files of the entries that need one."""

    fetched: Fetched
    changes: list[StoryChange] = field(default_factory=list)
    docs: dict[str, V6StoryDocument] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


@dataclass
class StoryRead:
    fetched: Fetched
    doc: V6StoryDocument | None = None
    previous: SprintStoryStatus | None = None
    error: str | None = None


@dataclass
class V6Reads:
    sprint: SprintRead | None = None
    stories: list[StoryRead] = field(default_factory=list)
    gate_decision: Fetched | None = None

    def tracked(self) -> list[Fetched]:
        """Every file whose version's introducer is recorded."""
        found = [self.sprint.fetched] if self.sprint else []
        found += [s.fetched for s in self.stories]
        return found + ([self.gate_decision] if self.gate_decision else [])


async def read_v6(
    session: AsyncSession, rc: RepoContext, push: Push, changes: dict[str, str], read: Reader, on_default: bool
) -> V6Reads:
    """Every GitHub read the v6 files of a push need. Their versions are read on every branch (who
    introduced a version decides whether it approves or reviews once it reaches the default branch);
    they are interpreted only where they count."""
    layout = rc.layout
    reads = V6Reads()
    for path, status in sorted(changes.items()):
        if status == "removed":
            continue
        if path == layout.gate_decision_path and "gate_decision" in rc.config.qa_sources:
            reads.gate_decision = await read(path, status, GATE_DECISION_MAX_BYTES)
        elif path == layout.sprint_status_path:
            reads.sprint = SprintRead(await read(path, status, SPRINT_STATUS_MAX_BYTES))
        elif is_v6_story_path(path, layout.implementation_dir):
            reads.stories.append(StoryRead(await read(path, status, STORY_MAX_BYTES)))
    if not on_default:
        return reads
    if reads.sprint is not None:
        await _read_sprint(session, rc, push, reads.sprint)
    for story in reads.stories:
        await _read_story(rc, push, story)
    return reads


async def _read_sprint(session: AsyncSession, rc: RepoContext, push: Push, sprint: SprintRead) -> None:
    fetched = sprint.fetched
    if fetched.error is not None or fetched.remote is None:
        return
    try:
        current = parse_sprint_status(fetched.remote.content, fetched.path)
    except SprintStatusError as exc:
        fetched.error = str(exc)
        return
    sprint.refused += [f"{fetched.path}: {r.key}: {r.reason}" for r in current.refused]
    changes = diff(await _previous_status(rc, push, fetched.path), current)
    if len(changes) > MAX_ENTRIES_PER_PUSH:
        skipped = ", ".join(f"{c.epic}.{c.story}" for c in changes[MAX_ENTRIES_PER_PUSH:][:20])
        more = ", ..." if len(changes) > MAX_ENTRIES_PER_PUSH + 20 else ""
        sprint.refused.append(
            f"{fetched.path}: {len(changes)} stories changed in one push; the first {MAX_ENTRIES_PER_PUSH} were "
            f"read, push the rest again (skipped: {skipped}{more})"
        )
        changes = changes[:MAX_ENTRIES_PER_PUSH]
    sprint.changes = changes
    index = StoryFileIndex(rc, push.after)
    lookups = 0
    for change in changes:
        entry = change.after
        if entry is None or lookups >= MAX_STORY_FILE_LOOKUPS:
            continue
        # A plain read, no lock: which stories are new decides which story files are worth reading.
        existing = await find_story(session, rc.project.id, entry.epic, entry.story)
        retitled = existing is not None and change.before is not None and change.before.key != entry.key
        if existing is None or retitled:
            lookups += 1
            doc = await _story_document(index, entry.key, sprint.refused)
            if doc is not None:
                sprint.docs[entry.key] = doc


async def _read_story(rc: RepoContext, push: Push, story: StoryRead) -> None:
    fetched = story.fetched
    if fetched.error is not None:
        story.error = fetched.error
        return
    if fetched.remote is None:
        return
    try:
        story.doc = parse_v6_story(fetched.path, fetched.remote.content)
    except V6StoryError as exc:
        story.error = str(exc)
        return
    if push.before == ZERO_SHA or story.doc.status is None:
        return
    try:
        old = await _fetch_text(rc, fetched.path, push.before, STORY_MAX_BYTES)
        story.previous = parse_v6_story(fetched.path, old).status if old is not None else None
    except (FileTooLarge, V6StoryError):
        story.previous = None


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


async def _story_document(index: StoryFileIndex, key: str, refused: list[str]) -> V6StoryDocument | None:
    for path in await index.paths_for(key):
        try:
            text = await _fetch_text(index.rc, path, index.ref, STORY_MAX_BYTES)
            if text is not None:
                return parse_v6_story(path, text)
        except (FileTooLarge, V6StoryError) as exc:
            refused.append(f"{path}: {exc}")
            return None
    return None


Apply = tuple[str, Callable[[], Awaitable[None]]]


def v6_default_branch_work(
    ctx: HandlerContext, rc: RepoContext, push: Push, reads: V6Reads, meta: dict[str, Any], report: StoryFileReport
) -> list[Apply]:
    """What the default branch's v6 files change, one piece of work per sprint entry and story file, each
    applied on its own so that one that cannot be stored is refused alone."""
    work: list[Apply] = []
    sprint = reads.sprint
    if sprint is not None:
        report.refused += sprint.refused
        if sprint.fetched.error is not None:
            log.warning("sprint status not usable", extra={"repository": rc.repository, "path": sprint.fetched.path})
            report.refused.append(f"{sprint.fetched.path}: {sprint.fetched.error}")
        for change in sprint.changes:
            work.append((sprint.fetched.path, partial(_sprint_entry, ctx, rc, push, sprint, change, meta)))
    for story in reads.stories:
        if story.error is not None:
            report.refused.append(f"{story.fetched.path}: {story.error}")
        elif story.doc is not None and story.doc.epic is not None and story.doc.story is not None:
            report.warnings += [f"{story.fetched.path}: {problem}" for problem in story.doc.problems]
            work.append((story.fetched.path, partial(_story_file, ctx, rc, push, story, meta)))
    return work


def _scope(rc: RepoContext) -> StoryScope:
    return StoryScope(rc.project, rc.config.default_budget, rc.config_problems)


async def _sprint_entry(
    ctx: HandlerContext,
    rc: RepoContext,
    push: Push,
    sprint: SprintRead,
    change: StoryChange,
    meta: dict[str, Any],
) -> None:
    session = ctx.session
    path = sprint.fetched.path
    fields = {**meta, "path": path}
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type, push.sender_id)
    if change.after is None:
        found = await find_story(session, rc.project.id, change.epic, change.story)
        if found is not None and change.before is not None:
            story = await lock_story(session, found.id)
            reason = f"{change.before.key} is no longer in {path}; the story is kept"
            audit(session, story, "sprint_entry_removed", actor, {**fields, "key": change.before.key, "reason": reason})
        return
    entry = change.after
    fields["key"] = entry.key
    story = await _upsert_story(ctx, rc, entry, sprint.docs.get(entry.key), actor, fields, change.before)
    before_status = change.before.status if change.before else None
    if entry.status != before_status:
        await _status_said(ctx, rc, push, sprint.fetched, story, entry.status, before_status, actor, fields)


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
    title = clean_text(doc.title if doc else title_from_slug(entry.slug))
    story, created = await draft_story(
        session,
        rc.project.id,
        entry.epic,
        entry.story,
        title=title,
        description=clean_text(doc.description) if doc else "",
        acceptance_criteria=clean_text(doc.acceptance_criteria) if doc else "",
        story_file=doc.path if doc else None,
    )
    if created:
        reason = f"{entry.key} added to sprint status"
        audit(session, story, "story_created", actor, {**fields, "reason": reason}, None, StoryStatus.DRAFT)
        return story
    if before is not None and before.key != entry.key:
        story.title = title
        if doc is not None:
            story.description = clean_text(doc.description)
            story.acceptance_criteria = clean_text(doc.acceptance_criteria)
            story.story_file = doc.path
        reason = f"sprint key {before.key} is now {entry.key}; the same story {entry.epic}.{entry.story}"
        audit(session, story, "sprint_key_changed", actor, {**fields, "previous_key": before.key, "reason": reason})
    return story


async def _status_said(
    ctx: HandlerContext,
    rc: RepoContext,
    push: Push,
    fetched: Fetched,
    story: Story,
    said: SprintStoryStatus,
    before: SprintStoryStatus | None,
    actor: sm.Actor,
    fields: dict[str, Any],
) -> None:
    """What a status written in the repository does: `ready-for-dev` asks for approval, by whoever
    introduced this version of the file; anything else is on record only."""
    session = ctx.session
    if said is S.READY_FOR_DEV and story.status != StoryStatus.DRAFT:
        return  # approval of an approved story: the sprint entry and story file often say it twice
    if said is S.BACKLOG and story.status == StoryStatus.DRAFT:
        return  # a backlog entry is what a DRAFT story is
    if said is S.READY_FOR_DEV:
        # The approval is whoever wrote this version of the file, not whoever pushed or merged it.
        approver = await actor_for(session, rc.project, fetched.origin, push.sender_type, fetched.origin_id)
        decision = sm.decide(await snapshot(session, story), sm.StoryFileApproved(), approver)
        if isinstance(decision, sm.Refused):
            decision = sm.Refused(decision.reason + carried_note(fetched.origin, push.sender_login))
        await apply_decision(session, story, decision, approver, {**fields, "said": said.value}, _scope(rc))
        return
    reason = (
        f"{fields.get('path')} says {said.value}"
        + (f" (was {before.value})" if before else "")
        + f"; the story stays {StoryStatus(story.status)}: pull requests and QA move it"
    )
    meta = {**fields, "said": said.value, "was": before.value if before else None, "reason": reason}
    audit(session, story, STATUS_REPORTED, actor, meta)


async def _story_file(ctx: HandlerContext, rc: RepoContext, push: Push, read: StoryRead, meta: dict[str, Any]) -> None:
    session = ctx.session
    doc = read.doc
    assert doc is not None and doc.epic is not None and doc.story is not None
    path = read.fetched.path
    fields = {**meta, "path": path}
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type, push.sender_id)
    title, description = clean_text(doc.title), clean_text(doc.description)
    criteria = clean_text(doc.acceptance_criteria)
    story, created = await draft_story(
        session,
        rc.project.id,
        doc.epic,
        doc.story,
        title=title,
        description=description,
        acceptance_criteria=criteria,
        story_file=path,
    )
    if created:
        audit(session, story, "story_created", actor, {**fields, "reason": f"{path} added"}, None, StoryStatus.DRAFT)
    else:
        changed = {
            name: value
            for name, value in (
                ("title", title),
                ("description", description),
                ("acceptance_criteria", criteria),
                ("story_file", path),
            )
            if value and getattr(story, name) != value
        }
        if changed:
            for name, value in changed.items():
                setattr(story, name, value)
            reason = f"{path} changed"
            audit(session, story, "story_updated", actor, {**fields, "reason": reason, "fields": sorted(changed)})
    if doc.status is not None and doc.status != read.previous:
        await _status_said(ctx, rc, push, read.fetched, story, doc.status, read.previous, actor, fields)
