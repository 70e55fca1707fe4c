"""Who may run a bot command: rules over the speaker's place in the project, with no I/O.

The speaker is the marketplace user bound to the commenter's numeric GitHub account (as
`services/people.py` binds logins), never whatever a comment claims. Their place in the project (its
client, an expert with an accepted bid, a story's assigned developer or QA) decides; a rule that depends
on one story (its developer) is judged again once the story is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from github_app.domain.story_machine import StorySnapshot
from github_app.domain.vocabulary import Role


@dataclass(frozen=True)
class Speaker:
    """The commenter. `user_id` is None for a GitHub account bound to no marketplace user; `problem`
    says why a login that names one was not taken as that user. `roles` are the user's role when they
    are tied to the project (empty otherwise)."""

    login: str
    account_id: int | None
    user_id: str | None = None
    roles: frozenset[Role] = frozenset()
    is_client: bool = False
    problem: str | None = None

    @property
    def tied(self) -> bool:
        return self.user_id is not None and (self.is_client or bool(self.roles))

    @property
    def mention(self) -> str:
        return f"@{self.login}"


@dataclass(frozen=True)
class Rule:
    """`who` names the people the rule admits, for replies and help; `admits(speaker, story)` judges,
    with `story` None before a story is known (a story's developer is then admitted provisionally)."""

    who: str
    admits: Callable[[Speaker, StorySnapshot | None], bool]

    def refusal(self, speaker: Speaker, story: StorySnapshot | None = None, doing: str = "run this") -> str | None:
        """Why `speaker` may not, or None."""
        if self is ANYONE:
            return None
        if speaker.user_id is None:
            if speaker.problem:
                return speaker.problem
            return (
                f"{speaker.mention} is not a marketplace user: set your GitHub username in your marketplace "
                "profile, then try again"
            )
        if self.admits(speaker, story):
            return None
        return f"{speaker.mention} cannot {doing}: only {self.who} may"


def _dev_of(speaker: Speaker, story: StorySnapshot | None) -> bool:
    if story is None:
        return Role.DEVELOPER in speaker.roles
    return speaker.user_id is not None and speaker.user_id == story.assigned_dev_id


ANYONE = Rule("anyone", lambda s, _: True)
MARKETPLACE_USER = Rule("a marketplace user", lambda s, _: s.user_id is not None)
TIED = Rule("people tied to this project", lambda s, _: s.tied)
APPROVERS = Rule("the project's PM or ARCHITECT", lambda s, _: bool(s.roles & {Role.PM, Role.ARCHITECT}))
CLIENT = Rule("the project's client", lambda s, _: s.is_client)
CLIENT_OR_PM = Rule("the project's client or PM", lambda s, _: s.is_client or Role.PM in s.roles)
CLIENT_PM_OR_DEVELOPER = Rule(
    "the project's client or PM, or the story's developer",
    lambda s, story: s.is_client or Role.PM in s.roles or _dev_of(s, story),
)
CLIENT_OR_DEVELOPER = Rule(
    "the project's client or the story's developer", lambda s, story: s.is_client or _dev_of(s, story)
)
