from __future__ import annotations

from dataclasses import replace

import pytest

from github_app.bmad.gate_file import GateDecision
from github_app.db.enums import DeliverableStatus, Role, StoryStatus
from github_app.domain.story_machine import (
    Action,
    Actor,
    ConvertedToDraft,
    Decision,
    DraftPrOpened,
    Event,
    GateRecorded,
    GateWithdrawn,
    MarkedReady,
    NewCommits,
    NoChange,
    PrClosedUnmerged,
    PrMerged,
    PullRequestRef,
    QaCommitted,
    ReadyPrOpened,
    Recorded,
    Refused,
    StatusChanged,
    StoryApproved,
    StoryDone,
    StoryFileApproved,
    StorySnapshot,
    Transition,
    accepted_gate,
    apply,
    decide,
    deliverable_change_allowed,
)

S = StoryStatus
D = DeliverableStatus
G = GateDecision

DEV = Actor("u-dev", "dana", frozenset({Role.DEVELOPER}))
OTHER_DEV = Actor("u-bob", "bob", frozenset({Role.DEVELOPER}))
QA = Actor("u-qa", "quinn", frozenset({Role.QA}))
OTHER_QA = Actor("u-qa2", "quincy", frozenset({Role.QA}))
PM = Actor("u-pm", "pam", frozenset({Role.PM}))
ARCHITECT = Actor("u-arch", "archie", frozenset({Role.ARCHITECT}))
CLIENT = Actor("u-client", "cleo", frozenset({Role.CLIENT}))
STRANGER = Actor(None, "stranger")
BOT = Actor(None, "dependabot[bot]", is_bot=True)

PASS = GateRecorded(G.PASS, accepted=True)
FAIL = GateRecorded(G.FAIL, accepted=False)
CONCERNS = GateRecorded(G.CONCERNS, accepted=False)


def pr(number: int = 7, author: Actor = DEV) -> PullRequestRef:
    return PullRequestRef(number, author.user_id, author.github_login)


def story(status: StoryStatus, **changes: object) -> StorySnapshot:
    base = StorySnapshot(1, 3, status, assigned_dev_id="u-dev", assigned_qa_id="u-qa")
    return replace(base, **changes)  # type: ignore[arg-type]


def ready_for_review(number: int = 7) -> StorySnapshot:
    return story(S.READY_FOR_REVIEW, pr_number=number, deliverable_status=D.SUBMITTED)


def run(snapshot: StorySnapshot, *steps: tuple[Event, Actor]) -> tuple[StorySnapshot, list[Decision]]:
    decisions = []
    for event, actor in steps:
        decision = decide(snapshot, event, actor)
        decisions.append(decision)
        snapshot = apply(snapshot, decision)
    return snapshot, decisions


# DRAFT -> APPROVED --------------------------------------------------------------------------------


@pytest.mark.parametrize("approver", [PM, ARCHITECT])
def test_story_file_approved_by_pm_or_architect(approver: Actor) -> None:
    decision = decide(story(S.DRAFT), StoryFileApproved(), approver)

    assert isinstance(decision, Transition)
    assert (decision.from_status, decision.to_status) == (S.DRAFT, S.APPROVED)
    assert decision.action == Action.APPROVED == "story_approved"
    assert decision.after.status is S.APPROVED
    assert decision.deliverable_status is None
    assert approver.mention in decision.reason


@pytest.mark.parametrize("actor", [DEV, QA, CLIENT])
def test_story_file_approved_by_anyone_else_is_refused(actor: Actor) -> None:
    decision = decide(story(S.DRAFT), StoryFileApproved(), actor)

    assert decision == Refused(
        f"@{actor.github_login} cannot approve story 1.3: that needs the ARCHITECT or PM role on the project"
    )


def test_approval_by_a_github_user_unknown_to_the_marketplace_is_refused() -> None:
    decision = decide(story(S.DRAFT), StoryFileApproved(), STRANGER)

    assert isinstance(decision, Refused)
    assert decision.reason.startswith("@stranger is not a marketplace user")


def test_approving_an_approved_story_changes_nothing() -> None:
    assert isinstance(decide(story(S.APPROVED), StoryFileApproved(), PM), NoChange)
    assert isinstance(decide(story(S.IN_PROGRESS), StoryFileApproved(), DEV), NoChange)


# APPROVED -> IN_PROGRESS -> READY_FOR_REVIEW --------------------------------------------------------


def test_draft_pr_by_the_assigned_developer_starts_development() -> None:
    decision = decide(story(S.APPROVED), DraftPrOpened(pr(7)), DEV)

    assert isinstance(decision, Transition)
    assert (decision.from_status, decision.to_status) == (S.APPROVED, S.IN_PROGRESS)
    assert decision.action == Action.DEVELOPMENT_STARTED
    assert decision.after.pr_number == 7
    assert decision.deliverable_status is None


def test_ready_pr_by_the_assigned_developer_submits_for_review() -> None:
    decision = decide(story(S.APPROVED), ReadyPrOpened(pr(7)), DEV)

    assert isinstance(decision, Transition)
    assert (decision.from_status, decision.to_status) == (S.APPROVED, S.READY_FOR_REVIEW)
    assert (decision.deliverable_status, decision.deliverable_pr) == (D.SUBMITTED, 7)
    assert decision.after.pr_number == 7


def test_marking_the_draft_ready_submits_for_review() -> None:
    after, decisions = run(story(S.APPROVED), (DraftPrOpened(pr(7)), DEV), (MarkedReady(pr(7)), DEV))

    assert after.status is S.READY_FOR_REVIEW
    assert isinstance(decisions[1], Transition)
    assert decisions[1].from_status is S.IN_PROGRESS
    assert decisions[1].deliverable_status is D.SUBMITTED


def test_someone_else_may_mark_the_developers_pr_ready() -> None:
    decision = decide(story(S.IN_PROGRESS, pr_number=7), MarkedReady(pr(7, author=DEV)), PM)

    assert isinstance(decision, Transition)
    assert decision.to_status is S.READY_FOR_REVIEW


@pytest.mark.parametrize("event_type", [DraftPrOpened, ReadyPrOpened, MarkedReady])
def test_pr_by_another_developer_is_refused(event_type: type[DraftPrOpened]) -> None:
    decision = decide(story(S.APPROVED), event_type(pr(9, author=OTHER_DEV)), OTHER_DEV)

    assert decision == Refused("@bob is not the developer assigned to story 1.3")


def test_pr_by_a_github_user_who_is_not_a_marketplace_user_is_refused() -> None:
    decision = decide(story(S.APPROVED), ReadyPrOpened(pr(9, author=STRANGER)), STRANGER)

    assert isinstance(decision, Refused)
    assert "@stranger is not a marketplace user" in decision.reason


def test_pr_for_a_story_without_a_developer_is_refused() -> None:
    decision = decide(story(S.APPROVED, assigned_dev_id=None), ReadyPrOpened(pr(7)), DEV)

    assert decision == Refused("story 1.3 has no assigned developer yet, so PR #7 cannot deliver it")


@pytest.mark.parametrize("event_type", [DraftPrOpened, ReadyPrOpened])
def test_pr_for_a_draft_story_is_refused(event_type: type[DraftPrOpened]) -> None:
    decision = decide(story(S.DRAFT), event_type(pr(7)), DEV)

    assert isinstance(decision, Refused)
    assert "not approved yet" in decision.reason


def test_second_pr_while_the_first_is_open_is_refused() -> None:
    decision = decide(story(S.IN_PROGRESS, pr_number=7), ReadyPrOpened(pr(8)), DEV)

    assert decision == Refused("story 1.3 is already delivered by PR #7; close that PR before opening another")


def test_duplicate_deliveries_change_nothing() -> None:
    assert isinstance(decide(story(S.IN_PROGRESS, pr_number=7), DraftPrOpened(pr(7)), DEV), NoChange)
    assert isinstance(decide(ready_for_review(), ReadyPrOpened(pr(7)), DEV), NoChange)
    assert isinstance(decide(ready_for_review(), MarkedReady(pr(7)), DEV), NoChange)


def test_late_opened_delivery_does_not_undo_ready_for_review() -> None:
    decision = decide(ready_for_review(), DraftPrOpened(pr(7)), DEV)

    assert isinstance(decision, NoChange)


# READY_FOR_REVIEW -> IN_PROGRESS --------------------------------------------------------------------


def test_fail_gate_requests_changes() -> None:
    decision = decide(ready_for_review(), FAIL, QA)

    assert isinstance(decision, Transition)
    assert (decision.from_status, decision.to_status) == (S.READY_FOR_REVIEW, S.IN_PROGRESS)
    assert decision.action == Action.CHANGES_REQUESTED
    assert (decision.deliverable_status, decision.deliverable_pr) == (D.CHANGES_REQUESTED, 7)
    assert decision.after.gate is G.FAIL


def test_conversion_to_draft_returns_to_in_progress() -> None:
    decision = decide(ready_for_review(), ConvertedToDraft(pr(7)), DEV)

    assert isinstance(decision, Transition)
    assert decision.to_status is S.IN_PROGRESS
    assert decision.deliverable_status is None


def test_closing_without_merge_rejects_the_deliverable_and_frees_the_story() -> None:
    snapshot = replace(ready_for_review(), gate=G.PASS, gate_accepted=True)

    decision = decide(snapshot, PrClosedUnmerged(pr(7)), CLIENT)

    assert isinstance(decision, Transition)
    assert decision.to_status is S.IN_PROGRESS
    assert (decision.deliverable_status, decision.deliverable_pr) == (D.REJECTED, 7)
    assert decision.after.pr_number is None
    assert (decision.after.gate, decision.after.gate_accepted) == (None, False)


def test_a_closed_prs_gate_does_not_complete_the_next_pr() -> None:
    after, _ = run(
        replace(ready_for_review(), gate=G.PASS, gate_accepted=True),
        (PrClosedUnmerged(pr(7)), DEV),
        (ReadyPrOpened(pr(8)), DEV),
        (PrMerged(pr(8)), CLIENT),
    )

    assert after.status is S.READY_FOR_REVIEW
    assert (after.pr_number, after.pr_merged) == (8, True)


def test_closing_a_draft_pr_only_unlinks_it() -> None:
    decision = decide(story(S.IN_PROGRESS, pr_number=7), PrClosedUnmerged(pr(7)), DEV)

    assert isinstance(decision, Recorded)
    assert decision.after.pr_number is None
    assert decision.deliverable_status is None


def test_reopened_pr_is_submitted_again() -> None:
    after, decisions = run(ready_for_review(), (PrClosedUnmerged(pr(7)), DEV), (ReadyPrOpened(pr(7)), DEV))

    assert after.status is S.READY_FOR_REVIEW
    assert isinstance(decisions[1], Transition)
    assert (decisions[1].deliverable_status, decisions[1].deliverable_pr) == (D.SUBMITTED, 7)


@pytest.mark.parametrize("event_type", [ConvertedToDraft, PrClosedUnmerged, PrMerged])
def test_events_about_another_pr_change_nothing(event_type: type[PrMerged]) -> None:
    decision = decide(ready_for_review(7), event_type(pr(99)), DEV)

    assert decision == NoChange("PR #99 is not the PR delivering story 1.3 (PR #7)")


# READY_FOR_REVIEW -> DONE, in either order ----------------------------------------------------------


def test_merge_after_an_accepted_gate_completes_the_story() -> None:
    after, decisions = run(ready_for_review(), (PASS, QA), (PrMerged(pr(7)), CLIENT))

    assert isinstance(decisions[0], Recorded)
    assert "waiting for the merge" in decisions[0].reason
    done = decisions[1]
    assert isinstance(done, Transition)
    assert (done.from_status, done.to_status) == (S.READY_FOR_REVIEW, S.DONE)
    assert done.action == Action.COMPLETED
    assert (done.deliverable_status, done.deliverable_pr) == (D.APPROVED, 7)
    assert after.status is S.DONE and after.pr_merged and after.gate_accepted


def test_gate_after_the_merge_completes_the_story() -> None:
    after, decisions = run(ready_for_review(), (PrMerged(pr(7)), CLIENT), (PASS, QA))

    assert isinstance(decisions[0], Recorded)
    assert decisions[0].status is S.READY_FOR_REVIEW
    assert "waits for an accepted QA gate" in decisions[0].reason
    assert isinstance(decisions[1], Transition)
    assert decisions[1].to_status is S.DONE
    assert decisions[1].deliverable_status is D.APPROVED
    assert after.status is S.DONE


def test_merged_with_an_unaccepted_gate_waits() -> None:
    after, decisions = run(ready_for_review(), (CONCERNS, QA), (PrMerged(pr(7)), CLIENT))

    assert after.status is S.READY_FOR_REVIEW
    assert all(isinstance(d, Recorded) for d in decisions)
    assert "not accepted" in decisions[0].reason  # type: ignore[union-attr]

    after, decisions = run(after, (PASS, QA))
    assert after.status is S.DONE


def test_waived_gate_completes_when_accepted() -> None:
    after, _ = run(ready_for_review(), (GateRecorded(G.WAIVED, accepted=True), QA), (PrMerged(pr(7)), CLIENT))

    assert after.status is S.DONE


def test_a_fail_gate_can_never_count_as_accepted() -> None:
    after, _ = run(ready_for_review(), (PrMerged(pr(7)), CLIENT), (GateRecorded(G.FAIL, accepted=True), QA))

    assert after.status is S.IN_PROGRESS
    assert after.gate_accepted is False


def test_fail_after_merge_then_pass_completes() -> None:
    after, decisions = run(ready_for_review(), (PrMerged(pr(7)), CLIENT), (FAIL, QA), (PASS, QA))

    assert [type(d) for d in decisions] == [Recorded, Transition, Transition]
    assert after.status is S.DONE
    assert after.deliverable_status is D.APPROVED


def test_merge_despite_a_fail_gate_waits_for_a_new_gate() -> None:
    after, decisions = run(ready_for_review(), (FAIL, QA), (PrMerged(pr(7)), CLIENT))

    assert after.status is S.READY_FOR_REVIEW
    assert isinstance(decisions[1], Transition)
    assert decisions[1].deliverable_status is D.SUBMITTED


def test_fix_pr_after_a_merged_pr_failed_review() -> None:
    snapshot = story(S.IN_PROGRESS, pr_number=7, pr_merged=True, gate=G.FAIL, deliverable_status=D.CHANGES_REQUESTED)

    after, decisions = run(snapshot, (ReadyPrOpened(pr(8)), DEV), (PASS, QA))

    assert after.status is S.READY_FOR_REVIEW
    assert (after.pr_number, after.pr_merged) == (8, False)

    after, _ = run(after, (PrMerged(pr(8)), CLIENT))
    assert after.status is S.DONE


def test_merge_delivered_before_the_opened_delivery() -> None:
    # Gate and merge arrive first; the PR had never been linked to the story.
    after, decisions = run(story(S.APPROVED), (PASS, QA), (PrMerged(pr(7)), CLIENT), (ReadyPrOpened(pr(7)), DEV))

    assert isinstance(decisions[0], Recorded)
    assert isinstance(decisions[1], Transition)
    assert (decisions[1].from_status, decisions[1].to_status) == (S.APPROVED, S.DONE)
    assert decisions[2] == NoChange("story 1.3 is DONE; DONE is final")
    assert after.status is S.DONE


def test_merge_of_someone_elses_pr_cannot_complete_the_story() -> None:
    decision = decide(replace(story(S.APPROVED), gate=G.PASS, gate_accepted=True), PrMerged(pr(9, OTHER_DEV)), PM)

    assert decision == Refused("@bob is not the developer assigned to story 1.3")


def test_merge_of_a_pr_for_a_draft_story_is_refused() -> None:
    decision = decide(story(S.DRAFT), PrMerged(pr(7)), CLIENT)

    assert isinstance(decision, Refused)
    assert "not approved yet" in decision.reason


def test_duplicate_merge_changes_nothing() -> None:
    merged = replace(ready_for_review(), pr_merged=True)

    assert decide(merged, PrMerged(pr(7)), CLIENT) == NoChange("the merge of PR #7 is already recorded")


# DONE is final ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "actor"),
    [
        (FAIL, QA),
        (PrClosedUnmerged(pr(7)), DEV),
        (ConvertedToDraft(pr(7)), DEV),
        (ReadyPrOpened(pr(8)), DEV),
        (StoryFileApproved(), PM),
        (PrMerged(pr(7)), CLIENT),
    ],
)
def test_nothing_leaves_done(event: Event, actor: Actor) -> None:
    done = story(S.DONE, pr_number=7, pr_merged=True, gate=G.PASS, gate_accepted=True)

    assert decide(done, event, actor) == NoChange("story 1.3 is DONE; DONE is final")


# Bots ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [StoryFileApproved(), ReadyPrOpened(pr(7)), PASS])
def test_bot_events_are_ignored(event: Event) -> None:
    bot_with_roles = replace(BOT, user_id="u-bot", roles=frozenset(Role))

    decision = decide(story(S.READY_FOR_REVIEW, pr_number=7), event, bot_with_roles)

    assert isinstance(decision, NoChange)
    assert "bots are ignored" in decision.reason


# Who may record a gate ----------------------------------------------------------------------------


def test_gate_by_a_qa_who_is_not_assigned_is_refused() -> None:
    assert decide(ready_for_review(), PASS, OTHER_QA) == Refused("@quincy is not the QA assigned to story 1.3")


def test_developer_cannot_record_a_gate_for_their_own_story() -> None:
    dev_with_qa_role = replace(DEV, roles=frozenset({Role.DEVELOPER, Role.QA}))
    unassigned_qa = replace(ready_for_review(), assigned_qa_id=None)

    decision = decide(unassigned_qa, PASS, dev_with_qa_role)

    assert decision == Refused("@dana is the developer of story 1.3 and cannot record its QA gate")


def test_any_project_qa_may_record_when_none_is_assigned() -> None:
    unassigned_qa = replace(ready_for_review(), assigned_qa_id=None)

    assert isinstance(decide(unassigned_qa, FAIL, OTHER_QA), Transition)
    refused = decide(unassigned_qa, PASS, PM)
    assert isinstance(refused, Refused)
    assert "needs the QA role" in refused.reason


def test_gate_by_a_non_marketplace_user_is_refused() -> None:
    decision = decide(ready_for_review(), PASS, STRANGER)

    assert isinstance(decision, Refused)
    assert "not a marketplace user" in decision.reason


def test_gate_on_a_draft_story_is_recorded_but_moves_nothing() -> None:
    decision = decide(story(S.DRAFT), PASS, QA)

    assert isinstance(decision, Recorded)
    assert decision.status is S.DRAFT
    assert decision.after.gate is G.PASS


def test_gate_before_development_is_kept_for_later() -> None:
    decision = decide(story(S.APPROVED), PASS, QA)

    assert isinstance(decision, Recorded)
    assert decision.status is S.APPROVED
    assert (decision.after.gate, decision.after.gate_accepted) == (G.PASS, True)


def test_same_gate_twice_changes_nothing() -> None:
    snapshot = story(S.IN_PROGRESS, pr_number=7, gate=G.PASS, gate_accepted=True)

    assert isinstance(decide(snapshot, PASS, QA), NoChange)


def test_repeated_fail_after_resubmission_requests_changes_again() -> None:
    snapshot = replace(ready_for_review(), gate=G.FAIL)

    decision = decide(snapshot, FAIL, QA)

    assert isinstance(decision, Transition)
    assert decision.deliverable_status is D.CHANGES_REQUESTED


# BLOCKED (set in the marketplace) ------------------------------------------------------------------


def test_a_story_blocked_in_the_marketplace_refuses_new_prs_but_keeps_merge_and_gate() -> None:
    blocked = replace(ready_for_review(), status=S.BLOCKED)

    assert isinstance(decide(blocked, ReadyPrOpened(pr(8)), DEV), Refused)
    after, decisions = run(blocked, (PrMerged(pr(7)), CLIENT), (PASS, QA))
    assert after.status is S.BLOCKED
    assert all(isinstance(d, Recorded) for d in decisions)


# accepted_gate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "waiver", "expired", "accepted_set", "expected", "fragment"),
    [
        (G.PASS, False, False, None, True, "accepted"),
        (G.WAIVED, True, False, None, True, "accepted"),
        (G.WAIVED, False, False, None, False, "no active waiver"),
        (G.CONCERNS, False, False, None, False, "not accepted in this repository (accepted: PASS, WAIVED)"),
        (G.CONCERNS, False, False, frozenset({G.PASS, G.CONCERNS}), True, "accepted"),
        (G.WAIVED, True, False, frozenset({G.PASS}), False, "not accepted in this repository"),
        (G.PASS, False, True, None, False, "expired"),
        (G.FAIL, False, False, frozenset(G), False, "FAIL"),
    ],
)
def test_accepted_gate(
    decision: GateDecision,
    waiver: bool,
    expired: bool,
    accepted_set: frozenset[GateDecision] | None,
    expected: bool,
    fragment: str,
) -> None:
    if accepted_set is None:
        accepted, reason = accepted_gate(decision, waiver, expired)
    else:
        accepted, reason = accepted_gate(decision, waiver, expired, accepted_set)

    assert accepted is expected
    assert fragment in reason


# apply and the deliverable lifecycle --------------------------------------------------------------


def test_apply_keeps_the_story_on_refusal_and_no_change() -> None:
    snapshot = story(S.APPROVED)

    assert apply(snapshot, Refused("no")) is snapshot
    assert apply(snapshot, NoChange("nothing")) is snapshot


def test_deliverable_lifecycle() -> None:
    assert deliverable_change_allowed(None, D.SUBMITTED)
    assert deliverable_change_allowed(D.SUBMITTED, D.CHANGES_REQUESTED)
    assert deliverable_change_allowed(D.CHANGES_REQUESTED, D.SUBMITTED)
    assert deliverable_change_allowed(D.SUBMITTED, D.REJECTED)
    assert not deliverable_change_allowed(None, D.REJECTED)
    assert not any(deliverable_change_allowed(D.APPROVED, status) for status in D)


def test_unknown_event_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        decide(story(S.APPROVED), "merged", DEV)  # type: ignore[arg-type]


def test_a_merge_by_a_bot_is_a_fact_that_completes_an_accepted_story() -> None:
    accepted = story(S.READY_FOR_REVIEW, pr_number=7, gate=G.PASS, gate_accepted=True, deliverable_status=D.SUBMITTED)

    decision = decide(accepted, PrMerged(pr(7)), BOT)

    assert isinstance(decision, Transition) and decision.to_status is S.DONE


# Reviewed heads -----------------------------------------------------------------------------------


def _accepted_at(*heads: str) -> StorySnapshot:
    return story(
        S.READY_FOR_REVIEW,
        pr_number=7,
        gate=G.PASS,
        gate_accepted=True,
        reviewed_heads=frozenset(heads),
        deliverable_status=D.SUBMITTED,
    )


def _pr_at(head: str) -> PullRequestRef:
    return replace(pr(7), head_sha=head)


def test_a_merge_at_a_head_qa_did_not_review_does_not_complete() -> None:
    decision = decide(_accepted_at("aaa", "bbb"), PrMerged(_pr_at("ccc")), CLIENT)

    assert isinstance(decision, Recorded) and decision.after.pr_merged
    assert "did not review" in decision.reason


def test_new_commits_by_the_developer_withdraw_the_acceptance() -> None:
    decision = decide(_accepted_at("aaa"), NewCommits(_pr_at("ccc")), DEV)

    assert isinstance(decision, Recorded)
    assert decision.action is Action.REVIEW_OUTDATED and not decision.after.gate_accepted


def test_the_qas_own_commit_on_a_reviewed_head_is_covered() -> None:
    decision = decide(_accepted_at("aaa"), QaCommitted(_pr_at("ddd"), before="aaa"), QA)

    assert isinstance(decision, Recorded) and decision.after.reviewed_heads == {"aaa", "ddd"}
    after_fail = story(S.IN_PROGRESS, pr_number=7, gate=G.FAIL, deliverable_status=D.CHANGES_REQUESTED)
    assert isinstance(decide(after_fail, QaCommitted(_pr_at("eee"), before="aaa"), QA), NoChange)


def test_a_merge_into_another_branch_completes_nothing() -> None:
    decision = decide(_accepted_at("aaa"), PrMerged(_pr_at("aaa"), into="dev-branch"), DEV)

    assert isinstance(decision, Transition)
    assert (decision.to_status, decision.deliverable_status) == (S.IN_PROGRESS, D.REJECTED)
    assert decision.after.pr_number is None


def test_an_expired_gate_is_judged_at_the_merge() -> None:
    from datetime import datetime

    expiring = replace(_accepted_at("aaa"), gate_expires_at=datetime(2026, 1, 1))

    late = decide(expiring, PrMerged(_pr_at("aaa"), merged_at=datetime(2026, 2, 1)), CLIENT)
    in_time = decide(expiring, PrMerged(_pr_at("aaa"), merged_at=datetime(2025, 12, 1)), CLIENT)

    assert isinstance(late, Recorded) and "expired" in late.reason and not late.after.gate_accepted
    assert isinstance(in_time, Transition) and in_time.to_status is S.DONE


def test_decisions_carry_their_domain_events() -> None:
    done = decide(_accepted_at("aaa"), PrMerged(_pr_at("aaa")), CLIENT)
    approved = decide(story(S.DRAFT), StoryFileApproved(), PM)

    assert StoryDone(7) in done.events and StatusChanged(S.READY_FOR_REVIEW, S.DONE) in done.events  # type: ignore[union-attr]
    assert StoryApproved("u-pm") in approved.events  # type: ignore[union-attr]


def test_a_withdrawn_gate_no_longer_counts_and_the_merge_waits_for_qa_again() -> None:
    withdraw = GateWithdrawn("https://github.com/o/r/pull/7#pullrequestreview-1")
    after, decisions = run(ready_for_review(), (PASS, QA), (withdraw, PM), (PrMerged(pr(7)), CLIENT))

    assert isinstance(decisions[1], Recorded) and decisions[1].action is Action.GATE_WITHDRAWN
    assert "waits for QA again" in decisions[1].reason
    assert after.status is S.READY_FOR_REVIEW and after.gate is None and not after.gate_accepted
    assert isinstance(decide(story(S.READY_FOR_REVIEW), withdraw, PM), NoChange)  # no gate in force
    done, _ = run(ready_for_review(), (PASS, QA), (PrMerged(pr(7)), CLIENT))
    assert isinstance(decide(done, withdraw, PM), NoChange)  # DONE is final


def test_a_cancelled_project_refuses_every_change_to_its_stories_but_done_stays_final() -> None:
    from github_app.domain.vocabulary import ProjectStatus

    cancelled = replace(ready_for_review(), project_status=ProjectStatus.CANCELLED, pr_merged=False)
    for event, actor in ((PrMerged(pr()), PM), (PASS, QA), (ConvertedToDraft(pr()), DEV), (StoryFileApproved(), PM)):
        decision = decide(cancelled, event, actor)
        assert isinstance(decision, Refused) and "CANCELLED" in decision.reason
    done = replace(cancelled, status=S.DONE)
    assert isinstance(decide(done, PrMerged(pr()), PM), NoChange)
