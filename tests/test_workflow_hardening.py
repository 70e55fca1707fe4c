"""The workflow as an attacker tries it: who wrote a gate or an approval, which merge completes a story,
and what the required `BMAD story` check may show. Each case through signed deliveries and the fake
GitHub; DONE must mean that the developer's PR, at a head the story's QA reviewed and accepted, was
merged into the default branch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from github_app.db.enums import BidStatus, Role
from github_app.db.models import Bid, Opportunity, User
from github_app.db.types import new_id
from github_app.demo.fake_github import FakeGitHub
from github_app.outbox.sender import OutboxSender
from tests.github_fixtures import REPO
from tests.harness import App
from tests.workflow import (
    DEV,
    GATE_PATH,
    OTHER_DEV,
    PM,
    QA,
    STORY_PATH,
    STRANGER,
    Market,
    gate_file,
    seed_market,
    story_file,
)

BRANCH = "story/1.3-user-auth"


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def show(app: App) -> None:
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()


async def story_row(m: Market) -> dict[str, Any]:
    [row] = await m.rows('SELECT id, status, "qaGateStatus", "qaGatePath", "qaReviewCount", "devPrNumber" FROM "Story"')
    return dict(zip(("id", "status", "gate", "gate_path", "reviews", "pr"), row, strict=True))


async def actions(m: Market) -> list[str]:
    return [r[0] for r in await m.rows('SELECT action FROM "StoryAuditLog" ORDER BY "createdAt", id')]


async def reasons(m: Market, action: str) -> list[str]:
    rows = await m.rows('SELECT metadata FROM "StoryAuditLog" WHERE action = :a ORDER BY "createdAt", id', a=action)
    return [str((r[0] if isinstance(r[0], dict) else json.loads(r[0])).get("reason")) for r in rows]


async def releases(m: Market) -> int:
    return len(await m.rows("SELECT 1 FROM escrow_release_request"))


async def deliverables(m: Market) -> list[str]:
    return [r[0] for r in await m.rows('SELECT status FROM "Deliverable" ORDER BY "submittedAt"')]


def latest_run(fake: FakeGitHub, sha: str, pr: int | None = None) -> dict[str, Any]:
    """The run GitHub judges the commit by: the latest of its name (per PR when `pr` is given)."""
    runs = [
        r
        for r in fake.check_runs.values()
        if r["head_sha"] == sha and r["name"] == "BMAD story" and (pr is None or r["external_id"] == f"pr:{pr}")
    ]
    assert runs, f"no BMAD story run on {sha}"
    return max(runs, key=lambda r: r["id"])


def passing(run: dict[str, Any]) -> bool:
    return run["status"] == "completed" and run["conclusion"] in ("success", "neutral", "skipped")


async def approved(app: App, m: Market) -> str:
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story = await story_row(m)
    assert story["status"] == "APPROVED"
    await m.accept_bid(story["id"], DEV)
    return str(story["id"])


async def submitted(app: App, m: Market, number: int = 7) -> None:
    await approved(app, m)
    await app.deliver("pull_request", m.pr("opened", number))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"


async def accepted(app: App, m: Market, number: int = 7) -> str:
    """Story 1.3 under review in PR `number`, QA's PASS committed on its branch: the reviewed head."""
    await submitted(app, m, number)
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("PASS")}, QA))
    head = m.heads[BRANCH]
    await app.deliver("pull_request", m.pr("synchronize", number, sender=QA))
    story = await story_row(m)
    assert (story["status"], story["gate"]) == ("READY_FOR_REVIEW", "PASS")
    return head


# -- who wrote the gate ------------------------------------------------------------------------------


async def test_a_developers_gate_merged_by_qa_is_not_qas_review(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    content = gate_file("PASS")
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: content}, DEV))  # refused: the developer's own gate
    # QA merges the PR: the default branch receives the developer's file in a push QA sent.
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, sender=QA))
    await app.deliver("push", m.push("main", {GATE_PATH: content}, QA))
    story = await story_row(m)
    assert (story["status"], story["gate"], story["reviews"]) == ("READY_FOR_REVIEW", None, 0)
    assert await releases(m) == 0
    assert any("written by @dana-dev" in r for r in await reasons(m, "transition_refused"))


async def test_squashed_or_cherry_picked_work_of_someone_else_is_not_the_pushers(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    # Never seen before, but the commit that brings it was authored by the developer.
    await app.deliver("push", m.push("main", {GATE_PATH: gate_file("PASS")}, QA, authored_by=DEV))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    assert await releases(m) == 0


async def test_a_commit_author_name_is_never_credited(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    # The developer writes QA's name into the commit: the push is still the developer's.
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("PASS")}, DEV, authored_by=QA))
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    story = await story_row(m)
    assert (story["status"], story["gate"]) == ("READY_FOR_REVIEW", None)
    assert await releases(m) == 0


async def test_a_gate_from_a_fork_pr_counts_as_its_authors(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await approved(app, m)
    content = gate_file("PASS").encode()
    blob = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    fake_github.set_pull_files(REPO, 7, [{"filename": GATE_PATH, "status": "added", "sha": blob}])
    await app.deliver("pull_request", m.pr("opened", 7, fork=True))  # its pushes never reach the app
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, fork=True, sender=QA))
    await app.deliver("push", m.push("main", {GATE_PATH: content.decode()}, QA))
    story = await story_row(m)
    assert (story["status"], story["gate"]) == ("READY_FOR_REVIEW", None)
    assert await releases(m) == 0


async def test_a_developers_approved_status_merged_by_the_pm_is_not_an_approval(app: App, market: Market) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    approved_text = story_file("Approved")
    await app.deliver("push", m.push(BRANCH, {STORY_PATH: approved_text}, DEV))
    await app.deliver("push", m.push("main", {STORY_PATH: approved_text}, PM))  # the PM merges it
    assert (await story_row(m))["status"] == "DRAFT"
    assert await m.rows("SELECT 1 FROM story_opportunity") == []
    assert any("written by @dana-dev" in r for r in await reasons(m, "transition_refused"))
    # The PM's own change approves.
    await app.deliver("push", m.push("main", {STORY_PATH: approved_text + "\n"}, PM))
    assert (await story_row(m))["status"] == "APPROVED"


async def test_after_done_no_gate_changes_the_qa_columns(app: App, market: Market) -> None:
    m = market
    await accepted(app, m)
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    done = await story_row(m)
    assert done["status"] == "DONE"
    for pusher in (QA, DEV, STRANGER):
        await app.deliver("push", m.push("main", {GATE_PATH: gate_file("FAIL", status_reason=f'"{pusher}"')}, pusher))
    assert await story_row(m) == done
    assert (await actions(m)).count("gate_ignored") == 3
    assert await releases(m) == 1


async def test_an_older_gate_arriving_late_never_overwrites_the_gate_in_force(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    older = m.push(BRANCH, {GATE_PATH: gate_file("FAIL")}, QA)
    newer = m.push(BRANCH, {GATE_PATH: gate_file("PASS")}, QA)
    await app.deliver("push", newer)
    await app.deliver("push", older)
    story = await story_row(m)
    assert (story["gate"], story["reviews"], story["status"]) == ("PASS", 2, "READY_FOR_REVIEW")
    assert await m.rows("SELECT gate FROM story_state") == [("PASS",)]
    assert "gate_superseded" in await actions(m)


async def test_a_developer_chosen_by_bid_with_the_qa_role_never_reviews_their_story(app: App, market: Market) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story = await story_row(m)
    async with app.runtime.sessionmaker() as s, s.begin():
        user = User(id=new_id(), email="duo@example.com", name="duo", github_username="duo-dev-qa", role=Role.QA)
        s.add(user)
        await s.flush()
        [(opp_id,)] = (await s.execute(text("SELECT opportunity_id FROM story_opportunity"))).all()
        bid = Bid(
            id=new_id(),
            opportunity_id=opp_id,
            expert_id=user.id,
            amount=1,
            currency="USDC",
            proposal="-",
            status=BidStatus.ACCEPTED,
        )
        s.add(bid)
        await s.flush()
        opp = await s.get(Opportunity, opp_id)
        assert opp is not None
        opp.accepted_bid_id = bid.id
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("PASS")}, "duo-dev-qa"))
    after = await story_row(m)
    assert (after["gate"], after["reviews"]) == (None, 0)
    assert any("is the developer of story 1.3" in r for r in await reasons(m, "transition_refused"))
    assert await m.scalar('SELECT "assignedDevId" FROM "Story"') == user.id
    assert story["status"] == "APPROVED"


# -- which merge completes a story -------------------------------------------------------------------


async def test_a_pr_retargeted_and_merged_elsewhere_does_not_complete(app: App, market: Market) -> None:
    m = market
    head = await accepted(app, m)
    edited = m.pr("edited", 7, base="dana-private", head_sha=head)
    edited["changes"] = {"base": {"ref": {"from": "main"}, "sha": {"from": "0" * 40}}}
    await app.deliver("pull_request", edited)
    assert await m.rows("SELECT base_ref FROM pull_request_link WHERE pr_number = 7") == [("dana-private",)]
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, base="dana-private", head_sha=head))
    story = await story_row(m)
    assert (story["status"], story["pr"]) == ("IN_PROGRESS", None)
    assert await releases(m) == 0
    assert await deliverables(m) == ["REJECTED"]
    assert {"pr_retargeted", "pr_merged_outside_default_branch"} <= set(await actions(m))


async def test_commits_after_the_gate_need_a_new_review(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    reviewed = await accepted(app, m)
    await show(app)
    assert latest_run(fake_github, reviewed)["conclusion"] == "success"
    m.push(BRANCH, {"src/auth.py": "more"}, DEV)  # the developer pushes after QA's PASS
    await app.deliver("pull_request", m.pr("synchronize", 7))
    unreviewed = m.heads[BRANCH]
    assert "review_outdated" in await actions(m)
    await show(app)
    run = latest_run(fake_github, unreviewed)
    assert run["status"] == "in_progress" and "review" in run["output"]["summary"]
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"  # merged, but QA never saw that code
    assert await releases(m) == 0
    # QA reviews the merged code: now it is done.
    await app.deliver("push", m.push("main", {GATE_PATH: gate_file("PASS", status_reason='"re-reviewed"')}, QA))
    assert (await story_row(m))["status"] == "DONE"
    assert await releases(m) == 1


async def test_a_merge_of_commits_qa_never_saw_does_not_complete(app: App, market: Market) -> None:
    m = market
    await accepted(app, m)
    # No synchronize delivery arrived: the merge itself shows a head QA did not review.
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, head_sha="e" * 40))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    assert await releases(m) == 0


async def test_qas_fail_gate_commit_is_not_a_resubmission(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("FAIL")}, QA))
    await app.deliver("pull_request", m.pr("synchronize", 7, sender=QA))  # comes with QA's commit
    assert (await story_row(m))["status"] == "IN_PROGRESS"
    assert await deliverables(m) == ["CHANGES_REQUESTED"]
    # What resubmits is the developer's: their next push ...
    m.push(BRANCH, {"src/auth.py": "fixed"}, DEV)
    await app.deliver("pull_request", m.pr("synchronize", 7))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    assert await deliverables(m) == ["SUBMITTED"]


async def test_a_review_request_by_the_developer_resubmits(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("FAIL")}, QA))
    await app.deliver("pull_request", m.pr("review_requested", 7, sender=STRANGER))  # not the developer's
    assert (await story_row(m))["status"] == "IN_PROGRESS"
    await app.deliver("pull_request", m.pr("review_requested", 7))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"


async def test_a_merge_by_a_bot_completes_a_story_qa_accepted(app: App, market: Market) -> None:
    m = market
    await accepted(app, m)
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, sender="github-merge-queue[bot]"))
    assert (await story_row(m))["status"] == "DONE"
    assert await releases(m) == 1
    [(user_id,)] = await m.rows("""SELECT "userId" FROM "StoryAuditLog" WHERE action = 'completed'""")
    assert user_id == "system:bmad-marketplace-app"  # a fact, not an actor


async def test_an_expired_gate_is_judged_at_the_merge(app: App, market: Market) -> None:
    m = market
    await submitted(app, m)
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("PASS", expires='"2099-01-01T00:00:00Z"')}, QA))
    late = m.pr("closed", 7, merged=True)
    late["pull_request"]["merged_at"] = "2099-02-01T00:00:00Z"
    await app.deliver("pull_request", late)
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    assert any("expired" in r for r in await reasons(m, "pr_merged"))
    assert await releases(m) == 0


async def test_a_revert_is_recorded_and_never_new_work(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await accepted(app, m)
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    assert (await story_row(m))["status"] == "DONE"
    revert = {
        "title": 'Revert "Story 1.3: user auth"',
        "body": f"Reverts {REPO}#7",
        "branch": "revert-7-story/1.3-user-auth",
        "author": PM,
        "head_sha": "7e" * 20,
    }
    await app.deliver("pull_request", m.pr("opened", 8, **revert))
    await app.deliver("pull_request", m.pr("closed", 8, merged=True, **revert))
    assert (await story_row(m))["status"] == "DONE"  # final
    assert await m.rows("SELECT story_id FROM pull_request_link WHERE pr_number = 8") == [(None,)]
    assert any("reverted by PR #8" in r for r in await reasons(m, "pr_reverted"))
    assert await releases(m) == 1
    await show(app)
    [comment] = [c for c in fake_github.comments.values() if c["issue_number"] == 7]
    assert "reverted by #8" in comment["body"]


async def test_editing_a_closed_unmerged_pr_does_not_bind_it(app: App, market: Market) -> None:
    m = market
    await approved(app, m)
    await app.deliver("pull_request", m.pr("opened", 9, title="Refactor", branch="cleanup"))
    await app.deliver("pull_request", m.pr("closed", 9, title="Refactor", branch="cleanup"))
    await app.deliver("pull_request", m.pr("edited", 9, title="Story 1.3: user auth", branch="cleanup", state="closed"))
    assert await m.rows("SELECT story_id FROM pull_request_link WHERE pr_number = 9") == [(None,)]
    assert (await story_row(m))["status"] == "APPROVED"


async def test_a_stale_gate_problem_is_cleared_by_a_valid_gate(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await submitted(app, m)
    head = m.heads[BRANCH]
    await app.deliver("push", m.push(BRANCH, {"docs/qa/gates/4.2-other.yml": gate_file("PASS", story="4.2")}, QA))
    await show(app)
    assert "Gate file refused" in latest_run(fake_github, head)["output"]["summary"]
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("PASS")}, QA))
    await app.deliver("pull_request", m.pr("synchronize", 7, sender=QA))
    await show(app)
    run = latest_run(fake_github, m.heads[BRANCH])
    assert run["conclusion"] == "success" and "Gate file refused" not in run["output"]["summary"]


# -- what the required check may show ----------------------------------------------------------------


async def test_a_strangers_pr_naming_an_accepted_or_done_story_never_passes(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await accepted(app, m)
    await app.deliver("pull_request", m.pr("opened", 30, author=OTHER_DEV, branch="x", head_sha="3" * 40))
    await show(app)
    assert not passing(latest_run(fake_github, "3" * 40))
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    assert (await story_row(m))["status"] == "DONE"
    # Any later PR naming the done story, even by its developer.
    await app.deliver("pull_request", m.pr("opened", 31, branch="y", head_sha="4" * 40))
    await show(app)
    assert not passing(latest_run(fake_github, "3" * 40))
    assert not passing(latest_run(fake_github, "4" * 40))


async def test_two_prs_on_one_head_do_not_overwrite_each_other(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await submitted(app, m)
    await app.deliver("push", m.push(BRANCH, {GATE_PATH: gate_file("FAIL")}, QA))
    head = m.heads[BRANCH]
    await app.deliver("pull_request", m.pr("synchronize", 7, sender=QA))
    await show(app)
    assert latest_run(fake_github, head)["conclusion"] == "failure"
    await app.deliver("pull_request", m.pr("opened", 32, title="Refactor", branch="cleanup", head_sha=head))
    await show(app)
    assert latest_run(fake_github, head, pr=7)["conclusion"] == "failure"
    assert latest_run(fake_github, head, pr=32)["conclusion"] == "failure"  # held, not neutral
    assert not passing(latest_run(fake_github, head))


async def test_a_completed_run_is_never_moved_back_to_in_progress(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await approved(app, m)
    head = "5" * 40
    await app.deliver("pull_request", m.pr("opened", 33, title="Refactor", branch="cleanup", head_sha=head))
    await show(app)
    first = latest_run(fake_github, head)
    assert first["conclusion"] == "neutral"
    await app.deliver("pull_request", m.pr("edited", 33, title="Story 1.3: user auth", branch="cleanup", head_sha=head))
    await show(app)
    latest = latest_run(fake_github, head)
    assert latest["id"] != first["id"] and latest["status"] == "in_progress"
    assert fake_github.check_runs[first["id"]]["status"] == "completed"
    assert await m.rows("SELECT 1 FROM github_outbox WHERE sent_version < version") == []


# -- one decision, its effects -----------------------------------------------------------------------


async def test_approving_a_story_by_a_push_refreshes_its_prs(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("pull_request", m.pr("opened", 34, head_sha="6" * 40))
    await show(app)
    assert "not approved yet" in latest_run(fake_github, "6" * 40)["output"]["summary"]
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    await show(app)
    assert "not approved yet" not in latest_run(fake_github, "6" * 40)["output"]["summary"]
    [(events,)] = await m.rows("""SELECT metadata FROM "StoryAuditLog" WHERE action = 'story_approved'""")
    events = events if isinstance(events, dict) else json.loads(events)
    assert events["events"] == ["StatusChanged", "StoryApproved"]


async def test_commits_a_bot_pushes_after_the_gate_are_not_reviewed(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await accepted(app, m)
    await app.deliver("pull_request", m.pr("synchronize", 7, sender="pre-commit-ci[bot]", head_sha="b07" * 13 + "a"))
    await show(app)
    assert not passing(latest_run(fake_github, "b07" * 13 + "a"))
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"


async def test_a_merge_into_a_release_branch_the_repository_names_completes(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    fake_github.put_file(REPO, "main", ".github/bmad-marketplace.yml", b"release_branches: [release]\n")
    head = await accepted(app, m)
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, base="release", head_sha=head))
    assert (await story_row(m))["status"] == "DONE"
    assert await releases(m) == 1


def test_release_branches_must_be_branch_names() -> None:
    from github_app.bmad.repo_config import parse_repo_config

    assert parse_repo_config("release_branches: [release, release]\n").release_branches == ("release",)
    bad = parse_repo_config("release_branches: release\n")
    assert bad.release_branches == () and "release_branches" in bad.problems[0]


async def test_a_gate_on_the_default_branch_does_not_cover_a_head_pushed_after_it_was_written(
    app: App, market: Market
) -> None:
    m = market
    await submitted(app, m)
    gate = m.push("main", {GATE_PATH: gate_file("PASS")}, QA)  # QA writes the gate, reviewing the head
    m.push(BRANCH, {"src/auth.py": "sneaky"}, DEV)  # the developer pushes just before it arrives
    await app.deliver("pull_request", m.pr("synchronize", 7))
    await app.deliver("push", gate)
    await app.deliver("pull_request", m.pr("closed", 7, merged=True))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    assert await releases(m) == 0
