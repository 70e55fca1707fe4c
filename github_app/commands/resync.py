"""`/bmad resync`: re-read the repository and repair what drifted from it.

The story files of the default branch are applied as a push that changed them would be (a story row
whose title, description or criteria drifted from its file is brought back, a missing story is
created as a DRAFT); every open pull request is re-read as its author's edit would be (a lost link is
made again, its draft, head and base state refreshed); and what GitHub shows for them is sent again
(a deleted PR comment or check run comes back). Nothing here decides anything the usual paths would
not: who wrote a file version is what the app already knows of it, so a resync can never credit an
approval or a review to its caller. Gate files are read only to report versions the app never
received: their review covers the commits their push names, which only that push (redelivered by
`bmad-app deliveries recover`) can tell.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gidgethub import sansio
from sqlalchemy import select, update

from github_app.bmad.gate_file import is_gate_path
from github_app.bmad.story_file import is_story_path
from github_app.commands.registry import Call, Reply, register
from github_app.db import wakes
from github_app.db.app_tables import GateReview, OutboxItem, PullRequestLink
from github_app.db.models import Story
from github_app.db.types import utcnow
from github_app.domain.command_grammar import UsageError
from github_app.domain.command_rights import CLIENT_OR_PM
from github_app.handling import HandlerContext
from github_app.outbox.enqueue import KIND_CHECK_RUN, KIND_PR_COMMENT
from github_app.services.pull_requests import handle_pull_request
from github_app.services.pushes import reread_story_files

# A resync runs inside one delivery, under its deadline: bounded reads.
MAX_STORY_FILES = 300
MAX_PULLS = 100
FIELDS = ("status", "title", "description", "acceptance_criteria", "assigned_dev_id", "dev_pr_number")


async def _picture(call: Call) -> tuple[dict[str, tuple[Any, ...]], dict[int, str | None]]:
    stories = (await call.session.execute(select(Story).where(Story.project_id == call.rc.project.id))).scalars()
    by_key = {f"{s.epic_number}.{s.story_number}": tuple(getattr(s, f) for f in FIELDS) for s in stories}
    links = await call.session.execute(
        select(PullRequestLink.pr_number, PullRequestLink.story_id).where(
            PullRequestLink.repository_key == call.rc.repository.lower()
        )
    )
    return by_key, {number: story_id for number, story_id in links.all()}


@register(
    "resync",
    usage="/bmad resync",
    summary="re-read the story files and open pull requests, repair what drifted, and say what changed",
    rule=CLIENT_OR_PM,
    doing="resync this repository",
)
async def resync(call: Call) -> Reply:
    if call.args:
        raise UsageError("resync takes nothing after it")
    rc, session = call.rc, call.session
    before, links_before = await _picture(call)
    branch = rc.default_branch
    tree = await rc.gh.getitem(f"/repos/{rc.repository}/git/trees/{quote(branch, safe='')}?recursive=1")
    blobs = [e for e in tree.get("tree") or [] if e.get("type") == "blob" and isinstance(e.get("path"), str)]
    story_paths = [e["path"] for e in blobs if is_story_path(e["path"], rc.paths.story_dir)]
    notes: list[str] = []
    if tree.get("truncated"):
        notes.append("GitHub listed only part of the repository's files")
    if len(story_paths) > MAX_STORY_FILES:
        notes.append(f"only the first {MAX_STORY_FILES} of {len(story_paths)} story files were read")
        story_paths = sorted(story_paths)[:MAX_STORY_FILES]
    sender = {"login": call.speaker.login, "type": "User", "id": call.speaker.account_id}
    report = await reread_story_files(
        HandlerContext(session, call.delivery_id, call.runtime), rc, story_paths, branch, sender, call.fields()
    )

    unseen_gates = []
    for entry in blobs:
        if is_gate_path(entry["path"], rc.paths.gate_dir) and "gate_file" in rc.config.qa_sources:
            known = await session.execute(select(GateReview.id).where(GateReview.blob_sha == entry.get("sha")).limit(1))
            if known.first() is None:
                unseen_gates.append(entry["path"])

    pulls: list[dict[str, Any]] = []
    async for pull in rc.gh.getiter(f"/repos/{rc.repository}/pulls?state=open&per_page=100"):
        pulls.append(pull)
        if len(pulls) >= MAX_PULLS:
            notes.append(f"only the first {MAX_PULLS} open pull requests were read")
            break
    ctx = HandlerContext(session, call.delivery_id, call.runtime)
    repository = {"full_name": rc.repository, "default_branch": branch}
    for pull in pulls:
        data = {
            "action": "edited",
            "number": pull.get("number"),
            "pull_request": pull,
            "repository": repository,
            "installation": {"id": rc.installation_id},
            "sender": pull.get("user") or {},
        }
        await handle_pull_request(ctx, sansio.Event(data, event="pull_request", delivery_id=call.delivery_id))
    resent = await _resend_views(call, pulls)

    after, links_after = await _picture(call)
    changes = _changes(before, after, links_before, links_after)
    lines = [
        f"Resync of `{rc.repository}` at `{branch}`: {len(story_paths)} story files and {len(pulls)} open pull "
        f"requests read; {resent} views sent to GitHub again."
    ]
    lines += ["", "Changed:", *[f"- {c}" for c in changes]] if changes else ["", "Nothing had drifted."]
    if report.refused:
        lines += ["", "Refused:", *[f"- {r}" for r in report.refused[:20]]]
    if unseen_gates:
        lines += [
            "",
            "Gate files the app never received (their push must be redelivered: `bmad-app deliveries recover`):",
            *[f"- `{p}`" for p in unseen_gates[:20]],
        ]
    if notes:
        lines += ["", *[f"Note: {n}." for n in notes]]
    return Reply.applied("\n".join(lines))


def _changes(
    before: dict[str, tuple[Any, ...]],
    after: dict[str, tuple[Any, ...]],
    links_before: dict[int, str | None],
    links_after: dict[int, str | None],
) -> list[str]:
    changes = []
    for key, now in sorted(after.items()):
        was = before.get(key)
        if was is None:
            changes.append(f"story {key} created from its file (DRAFT)")
            continue
        fixed = [FIELDS[i].replace("_", " ") for i, (a, b) in enumerate(zip(was, now, strict=True)) if a != b]
        if fixed:
            changes.append(f"story {key}: {', '.join(fixed)} brought back in line")
    for number, story_id in sorted(links_after.items()):
        if story_id is not None and links_before.get(number) != story_id:
            changes.append(f"PR #{number} linked to its story again")
    return changes


async def _resend_views(call: Call, pulls: list[dict[str, Any]]) -> int:
    """The open PRs' comment and check runs sent again: one deleted on GitHub is made again."""
    numbers = [str(p.get("number")) for p in pulls]
    runs = [f"{(p.get('head') or {}).get('sha') or ''}:pr{p.get('number')}" for p in pulls]
    if not numbers:
        return 0
    T = OutboxItem
    comment_rows = (T.kind == KIND_PR_COMMENT) & T.target.in_(numbers)
    run_rows = (T.kind == KIND_CHECK_RUN) & T.target.in_(runs)
    result = await call.session.execute(
        update(T)
        .where(T.repository == call.rc.repository, comment_rows | run_rows)
        .values(version=T.version + 1, next_attempt_at=utcnow(), updated_at=utcnow())
    )
    wakes.ask(call.session, wakes.OUTBOX)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
