"""Story commands: validate, status, assign, block. Every change goes through `decide()` and the domain
events of `services/decisions.py`, with an audit row linking the comment."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bounded import clean_text
from github_app.commands.registry import Call, Reply, register, reply_for
from github_app.commands.stages import planning_lines
from github_app.db.models import Story, StoryAuditLog
from github_app.domain import story_machine as sm
from github_app.domain.command_grammar import UsageError, integer, option, story_ref, user_ref
from github_app.domain.command_rights import APPROVERS, CLIENT_OR_PM, CLIENT_PM_OR_DEVELOPER, TIED
from github_app.domain.vocabulary import Role
from github_app.services.decisions import apply_decision
from github_app.services.people import login_of, user_by_login
from github_app.services.qa_decisions import scope_of
from github_app.services.stories import ensure_developer, find_story, lock_story, snapshot
from github_app.services.views import escrow_text


def bounded(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def locked_story(call: Call, word: str) -> tuple[Story, sm.StorySnapshot] | Reply:
    """The story `word` names in this project, locked, once the speaker may act on it; or the reply
    saying why not."""
    epic, number = story_ref(word)
    found = await find_story(call.session, call.rc.project.id, epic, number)
    if found is None:
        return Reply.refused(f"this project has no story {epic}.{number}")
    story = await lock_story(call.session, found.id)
    # The story's developer is who every other path takes it to be: the assigned one, or else the
    # expert of the accepted bid (recorded now, as the first pull request event would).
    await ensure_developer(call.session, story, call.fields())
    snap = await snapshot(call.session, story)
    refusal = call.refusal(snap)
    if refusal is not None:
        return Reply.refused(refusal)
    return story, snap


async def decide_and_apply(call: Call, story: Story, snap: sm.StorySnapshot, event: sm.Event) -> Reply:
    decision = sm.decide(snap, event, call.actor)
    await apply_decision(call.session, story, decision, call.actor, call.fields(), scope_of(call.rc))
    return reply_for(decision)


@register(
    "validate",
    usage="/bmad validate <story> score=<0-10>",
    example="/bmad validate 1.3 score=8",
    summary="validate a DRAFT story; it is approved from the repository's threshold on (default 7)",
    rule=APPROVERS,
    doing="validate stories",
)
async def validate(call: Call) -> Reply:
    if len(call.args) != 2:
        raise UsageError("validate takes a story and score=N")
    score_text = option(call.args[1], "score")
    if score_text is None:
        raise UsageError(f"the score is written score=N, not {call.args[1][:40]!r}")
    score = integer(score_text, "the score", 0, 10)
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, snap = found
    reply = await decide_and_apply(call, story, snap, sm.Validated(score, call.rc.config.validation_threshold))
    return reply


@register(
    "status",
    usage="/bmad status [story]",
    example="/bmad status 1.3",
    summary="the project's planning stages and stories (status, experts, deliverables, escrows), or one story "
    "with its last audit entries",
    rule=TIED,
    doing="see this project's stories",
)
async def status(call: Call) -> Reply:
    if len(call.args) > 1:
        raise UsageError("status takes at most one story")
    session = call.session
    if call.args:
        epic, number = story_ref(call.args[0])
        story = await find_story(session, call.rc.project.id, epic, number)
        if story is None:
            return Reply.refused(f"this project has no story {epic}.{number}")
        lines = [_story_table_header(), await _story_row(session, story), "", "Last entries of its audit log:", ""]
        entries = (
            select(StoryAuditLog)
            .where(StoryAuditLog.story_id == story.id)
            .order_by(StoryAuditLog.created_at.desc(), StoryAuditLog.id.desc())
            .limit(AUDIT_SHOWN)
        )
        for entry in (await session.execute(entries)).scalars().all():
            meta = entry.metadata_ if isinstance(entry.metadata_, dict) else {}
            why = bounded(str(meta.get("reason") or ""), 200)
            lines.append(f"- {entry.created_at:%Y-%m-%d %H:%M} `{entry.action}` {_cell(why)}")
        return Reply.applied("\n".join(lines))
    stmt = (
        select(Story)
        .where(Story.project_id == call.rc.project.id)
        .order_by(Story.epic_number, Story.story_number)
        .limit(STORIES_SHOWN + 1)
    )
    stories = list((await session.execute(stmt)).scalars().all())
    planning = await planning_lines(session, call.rc.project)
    if not stories:
        return Reply.applied("\n".join([*planning, "This project has no stories yet."]))
    rows = [await _story_row(session, s) for s in stories[:STORIES_SHOWN]]
    more = ["", f"Only the first {STORIES_SHOWN} stories are shown."] if len(stories) > STORIES_SHOWN else []
    return Reply.applied("\n".join([*planning, _story_table_header(), *rows, *more]))


STORIES_SHOWN = 50
AUDIT_SHOWN = 5


def _story_table_header() -> str:
    return "| story | status | developer | QA | gate | escrow |\n|---|---|---|---|---|---|"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


async def _story_row(session: AsyncSession, story: Story) -> str:
    dev = await login_of(session, story.assigned_dev_id)
    qa = await login_of(session, story.assigned_qa_id)
    escrow = await escrow_text(session, story)
    cells = [
        f"{story.epic_number}.{story.story_number} {bounded(story.title, 60)}",
        str(story.status),
        f"@{dev}" if dev else "-",
        f"@{qa}" if qa else "-",
        story.qa_gate_status or "-",
        escrow or "-",
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


async def _assign(call: Call, as_role: Role) -> Reply:
    if len(call.args) != 2:
        raise UsageError(f"{call.command.name} takes a story and a @login")
    login = user_ref(call.args[1])
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, snap = found
    user = await user_by_login(call.session, login)
    if user is None:
        return Reply.refused(f"@{login} is not a marketplace user (or several users claim that GitHub username)")
    event = sm.Assigned(as_role, user.id, user.github_username or login, Role(user.role))
    return await decide_and_apply(call, story, snap, event)


@register(
    "assign",
    usage="/bmad assign <story> @login",
    example="/bmad assign 1.3 @dana",
    summary="make a marketplace DEVELOPER the story's developer",
    rule=CLIENT_OR_PM,
    doing="assign developers",
)
async def assign(call: Call) -> Reply:
    return await _assign(call, Role.DEVELOPER)


@register(
    "assign-qa",
    usage="/bmad assign-qa <story> @login",
    example="/bmad assign-qa 1.3 @quinn",
    summary="make a marketplace QA the story's QA (never its developer)",
    rule=CLIENT_OR_PM,
    doing="assign QA",
)
async def assign_qa(call: Call) -> Reply:
    return await _assign(call, Role.QA)


@register(
    "block",
    usage="/bmad block <story> <reason>",
    example='/bmad block 1.3 "waiting for the API keys"',
    summary="block the story, with the reason",
    rule=CLIENT_PM_OR_DEVELOPER,
    doing="block this story",
)
async def block(call: Call) -> Reply:
    if len(call.args) < 2:
        raise UsageError("block takes a story and the reason")
    reason = clean_text(" ".join(call.args[1:]))[:500]
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, snap = found
    return await decide_and_apply(call, story, snap, sm.Blocked(reason))


@register(
    "unblock",
    usage="/bmad unblock <story>",
    example="/bmad unblock 1.3",
    summary="unblock the story: back to the status it had before",
    rule=CLIENT_PM_OR_DEVELOPER,
    doing="unblock this story",
)
async def unblock(call: Call) -> Reply:
    if len(call.args) != 1:
        raise UsageError("unblock takes a story")
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, snap = found
    return await decide_and_apply(call, story, snap, sm.Unblocked())
