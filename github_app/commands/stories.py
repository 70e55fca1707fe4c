"""Story commands: validate, status, assign, block. Every change goes through `decide()` and the domain
events of `services/decisions.py`, with an audit row linking the comment."""

from __future__ import annotations

from github_app.commands.registry import Call, Reply, register, reply_for
from github_app.db.models import Story
from github_app.domain import story_machine as sm
from github_app.domain.command_grammar import UsageError, integer, option, story_ref
from github_app.domain.command_rights import APPROVERS
from github_app.services.decisions import apply_decision
from github_app.services.qa_decisions import scope_of
from github_app.services.stories import find_story, lock_story, snapshot


async def locked_story(call: Call, word: str) -> tuple[Story, sm.StorySnapshot] | Reply:
    """The story `word` names in this project, locked, once the speaker may act on it; or the reply
    saying why not."""
    epic, number = story_ref(word)
    found = await find_story(call.session, call.rc.project.id, epic, number)
    if found is None:
        return Reply.refused(f"this project has no story {epic}.{number}")
    story = await lock_story(call.session, found.id)
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
