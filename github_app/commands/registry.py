"""The bot commands, each registered by the module of its family with its usage and its permission
rule beside it. A family adds a command by registering it here; the dispatcher
(`services/commands.py`) has no list of commands of its own.

A command's handler receives a `Call` (the unit of work, the repository, the speaker) and returns a
`Reply`; anything it changes goes through the services every other front door uses (`decide()` and
its domain events for a story, the escrow functions for money), in the delivery's transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from github_app.domain import story_machine as sm
from github_app.domain.command_grammar import UsageError
from github_app.domain.command_rights import Rule, Speaker

if TYPE_CHECKING:
    from github_app.runtime import Runtime
    from github_app.services.repo import RepoContext


class Outcome(enum.StrEnum):
    """How a command ended, and the reaction it puts on the comment."""

    APPLIED = "applied"  # done, or answered: +1
    PENDING = "pending"  # accepted; the effect follows (a payment the worker makes): eyes
    REFUSED = "refused"  # refused, not understood, or nothing to do: confused

    @property
    def reaction(self) -> str:
        return {"applied": "+1", "pending": "eyes", "refused": "confused"}[self.value]


@dataclass(frozen=True)
class Reply:
    outcome: Outcome
    text: str

    @classmethod
    def applied(cls, text: str) -> Reply:
        return cls(Outcome.APPLIED, text)

    @classmethod
    def refused(cls, text: str) -> Reply:
        return cls(Outcome.REFUSED, text)


@dataclass(frozen=True)
class CommentRef:
    id: int
    url: str
    issue_number: int
    on_pull_request: bool


@dataclass
class Call:
    """One command being run: its words after the name, who said it, where."""

    session: AsyncSession
    runtime: Runtime
    rc: RepoContext
    speaker: Speaker
    actor: sm.Actor
    comment: CommentRef
    delivery_id: str
    command: Command
    args: tuple[str, ...]
    text: str
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The audit metadata linking a change to the comment that asked for it."""
        return {
            "delivery_id": self.delivery_id,
            "event": "issue_comment",
            "repository": self.rc.repository,
            "comment_id": self.comment.id,
            "comment_url": self.comment.url,
            "command": self.text,
        }

    def refusal(self, story: sm.StorySnapshot | None = None) -> str | None:
        return self.command.rule.refusal(self.speaker, story, self.command.doing)

    def usage_error(self, problem: str) -> UsageError:
        return UsageError(problem)


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str  # `/bmad validate 1.3 score=8`, as help shows it
    summary: str
    rule: Rule
    doing: str  # "validate stories": what a refusal says the speaker cannot do
    run: Handler
    example: str = ""


COMMANDS: dict[str, Command] = {}


def register(
    name: str, *, usage: str, summary: str, rule: Rule, doing: str, example: str = ""
) -> Callable[[Handler], Handler]:
    def add(run: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(name, usage, summary, rule, doing, run, example or usage)
        return run

    return add


def reply_for(decision: sm.Decision) -> Reply:
    """What a story decision tells the person who asked for it."""
    if isinstance(decision, sm.Transition | sm.Recorded):
        return Reply.applied(decision.reason)
    if isinstance(decision, sm.Refused):
        return Reply.refused(decision.reason)
    return Reply.refused(f"nothing to do: {decision.reason}")
