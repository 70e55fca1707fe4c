"""The story machine's command events and the command permission rules, with no I/O: each refusal is
the machine's own, so a command whose declared rule were wrong still could not change a story."""

from __future__ import annotations

from dataclasses import replace

import pytest

from github_app.domain import story_machine as sm
from github_app.domain.command_rights import (
    APPROVERS,
    CLIENT,
    CLIENT_OR_DEVELOPER,
    CLIENT_PM_OR_DEVELOPER,
    TIED,
    Speaker,
)
from github_app.domain.vocabulary import Role, StoryStatus

S = StoryStatus
DRAFT = sm.StorySnapshot(epic=1, story=3, status=S.DRAFT)


def actor(role: Role | None, user: str = "u1") -> sm.Actor:
    return sm.Actor(user, "someone", frozenset({role}) if role else frozenset())


@pytest.mark.parametrize("role", [Role.PM, Role.ARCHITECT])
def test_validation_from_the_threshold_on_approves(role: Role) -> None:
    decision = sm.decide(DRAFT, sm.Validated(7, 7), actor(role))
    assert isinstance(decision, sm.Transition) and decision.to_status is S.APPROVED
    assert decision.after.validation_score == 7
    assert any(isinstance(e, sm.StoryApproved) for e in decision.events)
    below = sm.decide(DRAFT, sm.Validated(6, 7), actor(role))
    assert isinstance(below, sm.Recorded) and below.status is S.DRAFT and "threshold of 7" in below.reason


@pytest.mark.parametrize("role", [Role.CLIENT, Role.DEVELOPER, Role.QA, Role.UX, None])
def test_validation_by_anyone_else_is_refused_by_the_machine(role: Role | None) -> None:
    assert isinstance(sm.decide(DRAFT, sm.Validated(10, 7), actor(role)), sm.Refused)
    assert isinstance(sm.decide(DRAFT, sm.Validated(10, 7), sm.Actor(None, "ghost")), sm.Refused)


def test_block_remembers_the_status_and_unblock_goes_back() -> None:
    story = replace(DRAFT, status=S.IN_PROGRESS, assigned_dev_id="dev")
    blocked = sm.decide(story, sm.Blocked("keys"), actor(Role.DEVELOPER, "dev"))
    assert isinstance(blocked, sm.Transition) and blocked.after.blocked_from is S.IN_PROGRESS
    back = sm.decide(blocked.after, sm.Unblocked(), actor(Role.PM, "pm"))
    assert isinstance(back, sm.Transition) and back.to_status is S.IN_PROGRESS and back.after.blocked_from is None
    # Another developer, a QA, or a story blocked in the marketplace: refused.
    assert isinstance(sm.decide(story, sm.Blocked("x"), actor(Role.DEVELOPER, "other")), sm.Refused)
    assert isinstance(sm.decide(story, sm.Blocked("x"), actor(Role.QA, "qa")), sm.Refused)
    outside = replace(story, status=S.BLOCKED)
    assert isinstance(sm.decide(outside, sm.Unblocked(), actor(Role.CLIENT)), sm.Refused)


def test_unblocking_a_story_merged_and_accepted_meanwhile_completes_it() -> None:
    story = sm.StorySnapshot(
        1, 3, S.BLOCKED, "dev", "qa", 7, pr_merged=True, gate_accepted=True, blocked_from=S.READY_FOR_REVIEW
    )
    decision = sm.decide(story, sm.Unblocked(), actor(Role.CLIENT))
    assert isinstance(decision, sm.Transition) and decision.to_status is S.DONE
    assert any(isinstance(e, sm.StoryDone) for e in decision.events)


def test_done_is_final_for_every_command() -> None:
    done = replace(DRAFT, status=S.DONE)
    for event in (sm.Blocked("x"), sm.Unblocked(), sm.Validated(9, 7)):
        assert isinstance(sm.decide(done, event, actor(Role.CLIENT)), sm.NoChange)


def test_assignment_rules() -> None:
    story = replace(DRAFT, status=S.APPROVED, assigned_qa_id="qa")
    pm = actor(Role.PM, "pm")
    ok = sm.decide(story, sm.Assigned(Role.DEVELOPER, "dev", "dana", Role.DEVELOPER), pm)
    assert isinstance(ok, sm.Recorded) and ok.after.assigned_dev_id == "dev"
    same = sm.decide(story, sm.Assigned(Role.DEVELOPER, "qa", "quinn", Role.DEVELOPER), pm)
    assert isinstance(same, sm.Refused) and "both the developer and the QA" in same.reason
    wrong = sm.decide(story, sm.Assigned(Role.QA, "dev", "dana", Role.DEVELOPER), pm)
    assert isinstance(wrong, sm.Refused)
    by_dev = sm.decide(story, sm.Assigned(Role.DEVELOPER, "dev", "dana", Role.DEVELOPER), actor(Role.DEVELOPER))
    assert isinstance(by_dev, sm.Refused)
    delivering = replace(story, assigned_dev_id="dev", pr_number=7)
    swap = sm.decide(delivering, sm.Assigned(Role.DEVELOPER, "dev2", "olly", Role.DEVELOPER), pm)
    assert isinstance(swap, sm.Refused) and "PR #7" in swap.reason


def test_rules_name_who_may_and_judge_the_story_developer_on_the_story() -> None:
    client = Speaker("cleo", 1, "c", frozenset({Role.CLIENT}), is_client=True)
    dev = Speaker("dana", 2, "d", frozenset({Role.DEVELOPER}))
    other = Speaker("olly", 3, "o", frozenset({Role.DEVELOPER}))
    outsider = Speaker("sam", 4, "s")
    ghost = Speaker("ghost", 5)
    story = replace(DRAFT, assigned_dev_id="d")
    assert (
        CLIENT.refusal(client) is None
        and CLIENT.refusal(dev, doing="x") == "@dana cannot x: only the project's client may"
    )
    assert CLIENT_PM_OR_DEVELOPER.refusal(dev, story) is None
    assert CLIENT_PM_OR_DEVELOPER.refusal(other, story) is not None
    assert CLIENT_OR_DEVELOPER.refusal(other, story) is not None
    assert APPROVERS.refusal(client) is not None
    assert TIED.refusal(outsider) is not None and TIED.refusal(dev) is None
    assert "not a marketplace user" in (TIED.refusal(ghost) or "")
