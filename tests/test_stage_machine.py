"""The planning stage machine and the stage document paths, without I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from github_app.bmad.layout import detect_layout
from github_app.bmad.planning import mime_type, planning_paths
from github_app.bmad.repo_config import parse_repo_config
from github_app.domain import stage_machine as st
from github_app.domain.story_machine import Actor, NoChange, PullRequestRef, Refused
from github_app.domain.vocabulary import DeliverableStatus as D
from github_app.domain.vocabulary import ProjectStatus, Role

CLIENT = Actor("client-id", "cleo", frozenset({Role.CLIENT}), account_id=1)
EXPERT = Actor("expert-id", "ana", frozenset({Role.ANALYST}), account_id=2)
OTHER = Actor("other-id", "olly", frozenset({Role.DEVELOPER}), account_id=3)
NAMED_PM = Actor("pm-id", "pat", frozenset({Role.PM}), account_id=4)
HEAD, NEXT = "a" * 40, "b" * 40
STAGE = st.StageSnapshot("analyst", ProjectStatus.PLANNING, "analyst", "client-id", "expert-id", frozenset({"pm-id"}))


def pr(head: str = HEAD, author: str | None = "expert-id", number: int = 7) -> PullRequestRef:
    return PullRequestRef(number, author, "ana", head_sha=head)


def run(stage: st.StageSnapshot, *steps: tuple[st.StageEvent, Actor]) -> tuple[st.StageSnapshot, st.StageDecision]:
    decision: st.StageDecision = NoChange("nothing")
    for event, actor in steps:
        decision = st.decide_stage(stage, event, actor)
        if isinstance(decision, st.StageChange):
            stage = decision.after
    return stage, decision


def completed(decision: st.StageDecision) -> bool:
    return isinstance(decision, st.StageChange) and any(isinstance(e, st.StageCompleted) for e in decision.events)


@pytest.mark.parametrize("merge_first", [False, True])
def test_merged_and_approved_at_the_merged_head_completes_in_either_order(merge_first: bool) -> None:
    opened = (st.StagePrSubmitted(pr()), EXPERT)
    approved = (st.StageReviewed(7, HEAD, HEAD, approved=True), CLIENT)
    merged = (st.StagePrMerged(pr()), CLIENT)
    after, decision = run(STAGE, opened, *((merged, approved) if merge_first else (approved, merged)))
    assert completed(decision) and after.completed and after.status is D.APPROVED
    # Completion is final: nothing afterwards changes it.
    assert isinstance(st.decide_stage(after, st.StagePrClosed(pr()), CLIENT), NoChange)


def test_an_approval_of_another_head_neither_counts_nor_survives_new_commits() -> None:
    stage, _ = run(STAGE, (st.StagePrSubmitted(pr()), EXPERT), (st.StageReviewed(7, HEAD, HEAD, True), CLIENT))
    assert stage.status is D.APPROVED
    stage, decision = run(stage, (st.StagePrSubmitted(pr(NEXT), new_commits=True), EXPERT))
    assert stage.status is D.SUBMITTED and stage.approved_head is None
    _, old = run(stage, (st.StageReviewed(7, HEAD, NEXT, True), CLIENT))
    assert isinstance(old, st.ReviewNotCounted) and "current head" in old.reason
    # Merged at a head nobody approved: waits for a review of that head.
    stage, decision = run(stage, (st.StagePrMerged(pr(NEXT)), CLIENT))
    assert not completed(decision) and stage.merged_head == NEXT
    _, decision = run(stage, (st.StageReviewed(7, NEXT, NEXT, True), CLIENT))
    assert completed(decision)


@pytest.mark.parametrize(
    ("actor", "why"),
    [
        (OTHER, "neither the project's client"),
        (EXPERT, "cannot review their own deliverable"),
        (Actor(None, "ghost"), "not a marketplace user"),
    ],
)
def test_only_the_client_or_a_named_pm_or_architect_reviews(actor: Actor, why: str) -> None:
    stage, _ = run(STAGE, (st.StagePrSubmitted(pr()), EXPERT))
    decision = st.decide_stage(stage, st.StageReviewed(7, HEAD, HEAD, True), actor)
    assert isinstance(decision, st.ReviewNotCounted) and why in decision.reason
    assert run(stage, (st.StageReviewed(7, HEAD, HEAD, True), NAMED_PM))[0].status is D.APPROVED
    # The expert is never their own reviewer, even when the client names them.
    named_expert = replace(stage, reviewer_ids=frozenset({"expert-id"}))
    assert isinstance(st.decide_stage(named_expert, st.StageReviewed(7, HEAD, HEAD, True), EXPERT), NoChange)


def test_changes_requested_then_a_push_resubmits_and_a_close_rejects() -> None:
    stage, decision = run(
        STAGE, (st.StagePrSubmitted(pr()), EXPERT), (st.StageReviewed(7, HEAD, HEAD, False, "more detail"), CLIENT)
    )
    assert stage.status is D.CHANGES_REQUESTED
    assert isinstance(decision, st.StageChange) and decision.review_notes == "more detail"
    stage, _ = run(stage, (st.StagePrSubmitted(pr(NEXT), new_commits=True), EXPERT))
    assert stage.status is D.SUBMITTED
    stage, _ = run(stage, (st.StagePrClosed(pr(NEXT)), OTHER))
    assert stage.status is D.REJECTED
    # Merged into another branch is no delivery either; a new PR may then take over.
    fresh, _ = run(stage, (st.StagePrSubmitted(pr(number=8)), EXPERT))
    assert (fresh.pr_number, fresh.status) == (8, D.SUBMITTED)


def test_who_delivers_and_when() -> None:
    wrong = st.decide_stage(STAGE, st.StagePrSubmitted(pr(author="other-id")), OTHER)
    assert isinstance(wrong, Refused) and "not the expert of the accepted bid" in wrong.reason
    no_bid = st.decide_stage(replace(STAGE, expert_id=None), st.StagePrSubmitted(pr()), EXPERT)
    assert isinstance(no_bid, Refused) and "no accepted bid" in no_bid.reason
    later = st.decide_stage(replace(STAGE, current_stage="pm"), st.StagePrSubmitted(pr()), EXPERT)
    assert isinstance(later, Refused) and "current stage is pm" in later.reason
    cancelled = replace(STAGE, project_status=ProjectStatus.CANCELLED)
    assert isinstance(st.decide_stage(cancelled, st.StagePrSubmitted(pr()), EXPERT), Refused)
    stage, _ = run(STAGE, (st.StagePrSubmitted(pr()), EXPERT))
    second = st.decide_stage(stage, st.StagePrSubmitted(pr(number=9)), EXPERT)
    assert isinstance(second, Refused) and "already delivered by PR #7" in second.reason
    # A merge that arrives before the delivery of the opened PR still judges its author.
    assert isinstance(st.decide_stage(STAGE, st.StagePrMerged(pr(author="other-id")), CLIENT), Refused)


def test_a_dismissed_approval_no_longer_stands() -> None:
    stage, _ = run(STAGE, (st.StagePrSubmitted(pr()), EXPERT), (st.StageReviewed(7, HEAD, HEAD, True), CLIENT))
    stage, _ = run(stage, (st.StageReviewDismissed(7, HEAD), OTHER))
    assert stage.status is D.SUBMITTED
    _, decision = run(stage, (st.StagePrMerged(pr()), CLIENT))
    assert not completed(decision)
    # A workflow dismissing stale approvals is a bot: its dismissal stands all the same.
    approved, _ = run(stage, (st.StageReviewed(7, HEAD, HEAD, True), CLIENT))
    bot = Actor(None, "github-actions[bot]", is_bot=True)
    after, _ = run(approved, (st.StageReviewDismissed(7, HEAD), bot))
    assert after.status is D.SUBMITTED


def test_stage_documents_from_core_config_v6_and_the_repository_configuration() -> None:
    core = (
        b"prd:\n  prdFile: docs/PRD.md\n  prdShardedLocation: docs/prd\n"
        b"architecture:\n  architectureFile: docs/arch.md\n"
    )
    paths = planning_paths(core)
    assert paths.of("pm").matches("docs/PRD.md") and paths.of("pm").matches("docs/prd/goals.md")
    assert not paths.of("pm").matches("docs/prd.md") and paths.of("architect").matches("docs/arch.md")
    assert paths.of("architect").matches("docs/architecture/tech-stack.md")
    assert paths.stages_touched(["docs/brief.md", "src/app.py", "docs/front-end-spec.md"]) == ["analyst", "ux"]
    v6 = detect_layout({"_bmad/bmm/config.yaml": b'planning_artifacts: "{project-root}/_bmad-output/plans"\n'}).planning
    assert v6.of("analyst").matches("_bmad-output/plans/product-brief-widgets-2026-01-02.md")
    assert v6.of("pm").matches("_bmad-output/plans/prd.md") and v6.of("pm").matches("_bmad-output/plans/prd/x.md")
    assert v6.of("ux").matches("_bmad-output/plans/ux-design-specification.md")
    assert not v6.of("analyst").matches("_bmad-output/plans/sub/product-brief.md")
    config = parse_repo_config(b"stage_documents:\n  pm: [specs/requirements.md, specs/req/]\n  nope: [x.md]\n")
    assert config.problems and "not a planning stage" in config.problems[0]
    overridden = detect_layout({}, config.path_overrides).planning.of("pm")
    assert overridden.matches("specs/req/a.md") and not overridden.matches("docs/prd.md")
    assert (mime_type("a/b.MD"), mime_type("x.yaml"), mime_type("LICENSE")) == (
        "text/markdown",
        "application/yaml",
        "application/octet-stream",
    )
