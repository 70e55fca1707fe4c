"""Push events: story files on the default branch create and update stories (BMAD v4 story files, and
v6 sprint status and story files through `services.v6_pushes`); QA gate files and TEA gate decisions
on any branch record reviews and move stories."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
from gidgethub import GitHubException, sansio
from sqlalchemy import select, true
from sqlalchemy.exc import DBAPIError

from github_app.bmad.gate_decision import GateDecisionError, parse_gate_decision
from github_app.bmad.gate_file import (
    DEFAULT_MAX_BYTES,
    GateDecision,
    GateFileError,
    gate_id_from_path,
    is_gate_path,
    parse_gate_file,
)
from github_app.bmad.story_file import (
    BmadFileError,
    NotAStory,
    StoryFileStatus,
    is_story_path,
    parse_story_file,
    story_id_from_path,
)
from github_app.bmad.story_kind import kind_from_name
from github_app.bounded import clean_text, clip
from github_app.db.app_tables import PullRequestLink
from github_app.db.enums import StoryStatus
from github_app.db.models import Story
from github_app.domain import story_machine as sm
from github_app.handling import HandlerContext
from github_app.outbox.enqueue import KIND_CHECK_RUN, set_desired
from github_app.presentation import story_files_check_payload
from github_app.services.decisions import StoryScope, apply_decision
from github_app.services.people import actor_for
from github_app.services.provenance import carried_note, known_origin, record_origin
from github_app.services.push_event import (
    ZERO_SHA,
    Fetched,
    Push,
    StoryFileReport,
    changed_files,
    read_changed,
)
from github_app.services.qa_decisions import QaDecision, record_qa_decision
from github_app.services.repo import FileTooLarge, RepoContext, load_repo_context
from github_app.services.stories import (
    audit,
    draft_story,
    find_story,
    lock_story,
    snapshot,
    story_state,
)
from github_app.services.v6_pushes import read_v6, v6_default_branch_work
from github_app.services.views import refresh_pr, refresh_story_prs

log = logging.getLogger(__name__)

# Five times the largest real story file seen; keeps one file's parse well under a second.
STORY_FILE_MAX_BYTES = 512 * 1024


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
    on_default = push.branch == rc.default_branch
    # Every GitHub read first, then the rows. Story files are read on every branch: who introduced a
    # version decides whether its Approved status is an approval once it reaches the default branch.
    # Removals first: a renamed story file frees its story before the new name claims it.
    stories = [
        await read_changed(rc, push, path, status, STORY_FILE_MAX_BYTES)
        for path, status in sorted(changes.items(), key=lambda item: (item[1] != "removed", item[0]))
        if is_story_path(path, rc.paths.story_dir) and (on_default or status != "removed")
    ]
    gates = [
        await read_changed(rc, push, path, status, DEFAULT_MAX_BYTES)
        for path, status in sorted(changes.items())
        if status != "removed" and is_gate_path(path, rc.paths.gate_dir) and "gate_file" in rc.config.qa_sources
    ]
    v6 = await read_v6(ctx.session, rc, push, changes, partial(read_changed, rc, push), on_default)
    report = StoryFileReport()
    # Each file is applied on its own, in a savepoint: one that cannot be stored is refused alone. Story
    # files go before gate files: a gate may name a story the same push creates.
    applied: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    for fetched in stories:
        if await _isolated(ctx, rc, fetched.path, meta, report, partial(_note_origin, ctx, rc, push, fetched)):
            if on_default:
                applied.append((fetched.path, partial(_story_file, ctx, rc, push, fetched, meta, report)))
    for fetched in v6.tracked():
        await _isolated(ctx, rc, fetched.path, meta, report, partial(_note_origin, ctx, rc, push, fetched))
    if on_default:
        applied += v6_default_branch_work(ctx, rc, push, v6, meta, report)
    for fetched in gates:
        if await _isolated(ctx, rc, fetched.path, meta, report, partial(_note_origin, ctx, rc, push, fetched)):
            applied.append((fetched.path, partial(_gate_file, ctx, rc, push, fetched, meta)))
    if v6.gate_decision is not None:
        applied.append((v6.gate_decision.path, partial(_gate_decision, ctx, rc, push, v6.gate_decision, meta)))
    for path, apply in applied:
        await _isolated(ctx, rc, path, meta, report, apply)
    if report.refused or report.warnings:
        await set_desired(
            ctx.session,
            installation_id=rc.installation_id,
            repository=rc.repository,
            kind=KIND_CHECK_RUN,
            target=f"{push.after}:story-files",  # beside any PR check run on this commit
            payload=story_files_check_payload(push.after, report.refused, report.warnings),
        )


async def _note_origin(ctx: HandlerContext, rc: RepoContext, push: Push, fetched: Fetched) -> None:
    """Who introduced this version of the file, recorded the first time the app sees it."""
    if fetched.remote is None or not fetched.remote.blob_sha:
        return
    introducer = push.introducer(fetched.path)
    origin = await record_origin(
        ctx.session,
        repository=rc.repository,
        blob_sha=fetched.remote.blob_sha,
        path=fetched.path,
        introducer=introducer,
        introducer_id=push.sender_id if introducer else None,
        commit_sha=push.after,
        ref=push.ref,
        source="push",
    )
    fetched.origin, fetched.origin_id = origin.login, origin.account_id


def _worth_retrying(exc: Exception) -> bool:
    """Whether a failure is about the world (GitHub, the network, the database's state) rather than about
    the file: those fail the delivery, which is retried whole; anything else is the file's own fault."""
    if isinstance(exc, GitHubException | aiohttp.ClientError | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        # SQLSTATE class 22 is a value the database refuses (NUL in text, a number out of range): retrying
        # cannot help. Lost connections, deadlocks and serialization failures can.
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return exc.connection_invalidated or not sqlstate.startswith("22")
    return False


async def _isolated(
    ctx: HandlerContext,
    rc: RepoContext,
    path: str,
    meta: dict[str, Any],
    report: StoryFileReport,
    work: Callable[[], Awaitable[None]],
) -> bool:
    """Apply one changed file inside its own savepoint; False when it was refused. A file that fails for
    a reason of its own is refused alone (logged, audited on its story when one exists, listed on the
    commit's story-files check run) and the rest of the push is applied; a failure worth retrying fails
    the whole delivery."""
    try:
        async with ctx.session.begin_nested():
            await work()
        return True
    except Exception as exc:
        if _worth_retrying(exc):
            raise
        # Cleaned: the reason goes to JSON columns, and PostgreSQL refuses NUL there as well.
        reason = clean_text(f"{clip(path, 200)}: not applied ({type(exc).__name__}: {clip(_first_line(exc), 200)})")
        log.warning(
            "changed file refused",
            extra={"repository": rc.repository, "path": path, "error": reason},
            exc_info=not isinstance(exc, ValueError | DBAPIError),
        )
        report.refused.append(reason)
        await _audit_refusal(ctx, rc, path, meta, reason)
        return False


async def _audit_refusal(ctx: HandlerContext, rc: RepoContext, path: str, meta: dict[str, Any], reason: str) -> None:
    """A refused file is on the record of the story its name points to, when that story exists."""
    try:
        ident = story_id_from_path(path) if is_story_path(path, rc.paths.story_dir) else gate_id_from_path(path)
    except BmadFileError:
        ident = None
    story = await find_story(ctx.session, rc.project.id, *ident) if ident else None
    if story is not None:
        story = await lock_story(ctx.session, story.id)
        audit(
            ctx.session, story, "file_refused", None, {**meta, "path": clean_text(path), "reason": clean_text(reason)}
        )


def _first_line(exc: Exception) -> str:
    # A database error's text carries the statement and its parameters (the whole file); its driver's
    # message says what was wrong.
    source = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return (str(source).strip().splitlines() or [""])[0]


def _scope(rc: RepoContext) -> StoryScope:
    return StoryScope(rc.project, rc.config.default_budget, rc.config_problems)


async def _story_file(
    ctx: HandlerContext,
    rc: RepoContext,
    push: Push,
    fetched: Fetched,
    meta: dict[str, Any],
    report: StoryFileReport,
) -> None:
    session = ctx.session
    path = fetched.path
    fields = {**meta, "path": path}
    if fetched.status == "removed":
        try:
            ident = story_id_from_path(path)
        except BmadFileError:
            ident = None
        story = await find_story(session, rc.project.id, *ident) if ident else None
        # A story is never deleted with its file; the removal is on record. Removing a report or another
        # file that merely names the story's number is not the story's business.
        if story is not None and story.story_file == path:
            story = await lock_story(session, story.id)
            audit(session, story, "story_file_removed", None, {**fields, "reason": "story file removed"})
            story.story_file = None
        return
    try:
        if fetched.error is not None:
            raise BmadFileError(fetched.error)
        if fetched.remote is None:
            return
        doc = parse_story_file(
            path, fetched.remote.content.decode("utf-8", errors="replace"), status_aliases=rc.config.status_aliases
        )
    except NotAStory as exc:
        log.info("not a story file", extra={"repository": rc.repository, "path": path, "kind": exc.kind})
        report.warnings.append(str(exc))
        return
    except (BmadFileError, FileTooLarge) as exc:
        log.warning("story file not usable", extra={"repository": rc.repository, "path": path, "error": str(exc)})
        report.refused.append(f"{path}: {exc}")
        await _audit_refusal(ctx, rc, path, meta, f"{path}: {exc}")
        return
    for problem in doc.problems:
        log.warning("story file problem", extra={"repository": rc.repository, "path": path, "problem": problem})
        report.warnings.append(f"{path}: {problem}")
    story, created = await draft_story(
        session,
        rc.project.id,
        doc.epic,
        doc.story,
        title=doc.title,
        description=doc.description,
        acceptance_criteria=doc.acceptance_criteria,
        story_file=path,
    )
    if not created and _is_other_source(story.story_file, path, rc.paths.story_dir):
        report.refused.append(
            f"{path}: story {doc.epic}.{doc.story} is read from {story.story_file}; this file is not merged "
            f"into it (remove or renumber one of them)"
        )
        return
    actor = await actor_for(session, rc.project, push.sender_login, push.sender_type, push.sender_id)
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
            for name, value, found_in_file in (
                ("title", doc.title, doc.title_found),
                ("description", doc.description, bool(doc.description)),
                ("acceptance_criteria", doc.acceptance_criteria, bool(doc.acceptance_criteria)),
                ("story_file", path, True),
            )
            # A file without a section never empties what is stored.
            if found_in_file and getattr(story, name) != value
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
        # The approval is whoever wrote this version of the file, not whoever pushed or merged it.
        approver = await actor_for(session, rc.project, fetched.origin, push.sender_type, fetched.origin_id)
        decision = sm.decide(await snapshot(session, story), sm.StoryFileApproved(), approver)
        if isinstance(decision, sm.Refused):
            decision = sm.Refused(decision.reason + carried_note(fetched.origin, push.sender_login))
        await apply_decision(session, story, decision, approver, fields, _scope(rc))


def _is_other_source(source: str | None, path: str, story_dir: str) -> bool:
    """Whether a story is already read from another file. One file is a story's source; a second one
    naming the same story is reported, never merged in. A source that is no longer in the story folder
    (the folder moved) or that is not a story (recorded before reports were told from stories) gives way."""
    return (
        bool(source)
        and source != path
        and is_story_path(source or "", story_dir)
        and kind_from_name(source or "") is None
    )


async def _gate_problem_on_branch(ctx: HandlerContext, rc: RepoContext, push: Push, problem: str | None) -> None:
    """A gate file that names no usable story is reported on the PRs of the branch it was pushed to;
    a valid gate clears that report."""
    links = (
        (
            await ctx.session.execute(
                select(PullRequestLink).where(
                    PullRequestLink.repository_key == rc.repository.lower(),
                    PullRequestLink.head_ref == push.branch,
                    PullRequestLink.state == "open",
                    PullRequestLink.gate_problem.is_not(None) if problem is None else true(),
                )
            )
        )
        .scalars()
        .all()
    )
    for link in links:
        if link.gate_problem == problem:
            continue
        link.gate_problem = problem
        await refresh_pr(ctx.session, link, rc.config_problems)


async def _reviewed_heads(ctx: HandlerContext, rc: RepoContext, push: Push, story: Story, path: str) -> frozenset[str]:
    """The commits a gate reviews. Pushed to a branch (the PR's, normally): the commit it was pushed as
    and the one it was built on. Pushed to the default branch: the head of the story's PR then."""
    if push.branch != rc.default_branch:
        return frozenset(sha for sha in (push.after, push.before) if sha != ZERO_SHA)
    if story.dev_pr_number is None:
        return frozenset()
    link = await ctx.session.get(PullRequestLink, (rc.repository.lower(), story.dev_pr_number))
    if link is None:
        return frozenset()
    committed_at = push.committed_at(path)
    if link.head_updated_at is not None and committed_at < link.head_updated_at:
        # The PR's head moved after QA wrote this gate: QA cannot have reviewed it.
        return frozenset()
    return frozenset({link.head_sha})


async def _gate_file(ctx: HandlerContext, rc: RepoContext, push: Push, fetched: Fetched, meta: dict[str, Any]) -> None:
    session = ctx.session
    path = fetched.path
    commit = push.last_commit_touching(path) or {}
    fields = {**meta, "path": path, "commit_sha": commit.get("id") or push.after}
    try:
        if fetched.error is not None:
            raise GateFileError(fetched.error)
        if fetched.remote is None:
            return
        remote = fetched.remote
        doc = parse_gate_file(path, remote.content)
    except GateFileError as exc:
        problem = f"{path}: {exc}"
        log.warning("gate file refused", extra={"repository": rc.repository, "path": path, "error": str(exc)})
        try:
            ident = gate_id_from_path(path)
        except BmadFileError:
            ident = None
        story = await find_story(session, rc.project.id, *ident) if ident else None
        if story is None:
            await _gate_problem_on_branch(ctx, rc, push, problem)
            return
        story = await lock_story(session, story.id)
        if story.status == StoryStatus.DONE:
            return  # nothing changes a done story's review
        (await story_state(session, story.id)).gate_problem = problem
        audit(session, story, "gate_invalid", None, {**fields, "reason": problem})
        await refresh_story_prs(session, story.id, rc.config_problems)
        return
    found = await find_story(session, rc.project.id, doc.epic, doc.story)
    if found is None:
        await _gate_problem_on_branch(
            ctx, rc, push, f"{path}: story {doc.epic}.{doc.story} does not exist in this project"
        )
        return
    story = await lock_story(session, found.id)
    reviewer = await actor_for(session, rc.project, fetched.origin, push.sender_type, fetched.origin_id)
    expired = doc.is_expired(datetime.now(UTC))
    accepted, why = sm.accepted_gate(doc.gate, doc.waiver_active, expired, rc.config.accepted_gates)
    notes: list[str] = []
    if doc.waiver_active and doc.waiver_reason:
        notes.append(f"waiver: {doc.waiver_reason}")
    if doc.expires is not None:
        notes.append(f"{'expired' if expired else 'expires'} {doc.expires:%Y-%m-%d}")
    qa = QaDecision(
        gate=doc.gate,
        accepted=accepted,
        why=why,
        source=path,
        version=remote.blob_sha,
        commit_sha=str(fields["commit_sha"]),
        decided_at=push.committed_at(path),
        reviewed=await _reviewed_heads(ctx, rc, push, story, path),
        notes=tuple(notes),
        expires_at=doc.expires.astimezone(UTC).replace(tzinfo=None) if doc.expires is not None else None,
    )
    carried = carried_note(fetched.origin, push.sender_login)
    if await record_qa_decision(session, rc, story, reviewer, qa, fields, carried) and push.branch != rc.default_branch:
        await _gate_problem_on_branch(ctx, rc, push, None)


async def _gate_decision(
    ctx: HandlerContext, rc: RepoContext, push: Push, fetched: Fetched, meta: dict[str, Any]
) -> None:
    """TEA's gate-decision.json: counted like a gate file, from whoever introduced this version."""
    session = ctx.session
    path = fetched.path
    commit = push.last_commit_touching(path) or {}
    fields = {**meta, "path": path, "commit_sha": commit.get("id") or push.after}
    try:
        if fetched.error is not None:
            raise GateDecisionError(fetched.error)
        if fetched.remote is None:
            return
        remote = fetched.remote
        found = parse_gate_decision(remote.content, path)
    except GateDecisionError as exc:
        await _gate_problem_on_branch(ctx, rc, push, f"{path}: {exc}")
        return
    if found is None:
        log.info("gate decision about no story", extra={"repository": rc.repository, "path": path})
        return
    existing = await find_story(session, rc.project.id, found.epic, found.story)
    if existing is None:
        await _gate_problem_on_branch(ctx, rc, push, f"{path}: story {found.key} does not exist in this project")
        return
    story = await lock_story(session, existing.id)
    reviewer = await actor_for(session, rc.project, fetched.origin, push.sender_type, fetched.origin_id)
    if found.gate is None:
        reason = f"{path} says NOT_EVALUATED for {found.key}; nothing decided"
        audit(session, story, "gate_not_evaluated", reviewer, {**fields, "reason": reason})
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
        reviewed=await _reviewed_heads(ctx, rc, push, story, path),
        notes=(f"rationale: {clip(found.rationale, 200)}",) if found.rationale else (),
    )
    carried = carried_note(fetched.origin, push.sender_login)
    await record_qa_decision(session, rc, story, reviewer, qa, fields, carried)
    if push.branch != rc.default_branch and story.qa_gate_path == path:
        await _gate_problem_on_branch(ctx, rc, push, None)


async def reread_story_files(
    ctx: HandlerContext, rc: RepoContext, paths: list[str], ref: str, sender: dict[str, Any], meta: dict[str, Any]
) -> StoryFileReport:
    """The story files `paths` of the default branch at `ref`, applied as a push that changed them would
    be (a resync). Who wrote each version is what the app already knows of it: a version it never saw is
    credited to nobody and not recorded, so that the push that brought it, redelivered, still decides."""
    push = Push({"ref": f"refs/heads/{rc.default_branch}", "after": ref, "commits": [], "sender": sender})
    report = StoryFileReport()
    for path in sorted(paths):
        fetched = await read_changed(rc, push, path, "modified", STORY_FILE_MAX_BYTES)
        if fetched.remote is not None and fetched.remote.blob_sha:
            origin = await known_origin(ctx.session, rc.repository, fetched.remote.blob_sha)
            if origin is not None:
                fetched.origin, fetched.origin_id = origin.login, origin.account_id
        await _isolated(ctx, rc, path, meta, report, partial(_story_file, ctx, rc, push, fetched, meta, report))
    return report
