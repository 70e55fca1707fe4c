"""The story workflow end to end: signed deliveries in, rows, audit trail, check runs and comments out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from github_app.outbox.sender import OutboxSender
from tests.deliveries import guid
from tests.fake_github import FakeGitHub
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


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def show(app: App) -> None:
    """Bring GitHub up to date: what the user sees once the outbox has been sent."""
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()


async def story_row(m: Market) -> dict[str, Any]:
    rows = await m.rows(
        'SELECT id, status, "assignedDevId", "devPrNumber", "devPrUrl", "devPrAuthor", "qaGateStatus", '
        '"qaGatePath", "qaReviewCount", "validatedBy", title FROM "Story"'
    )
    assert len(rows) == 1, rows
    keys = ("id", "status", "dev", "pr", "pr_url", "pr_author", "gate", "gate_path", "reviews", "validated_by", "title")
    return dict(zip(keys, rows[0], strict=True))


async def audit_actions(m: Market) -> list[str]:
    return [r[0] for r in await m.rows('SELECT action FROM "StoryAuditLog" ORDER BY "createdAt", id')]


async def approved_story(app: App, m: Market) -> str:
    """Story 1.3 created by the PM and approved by the PM, its opportunity won by DEV."""
    assert await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM)) == 202
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story = await story_row(m)
    assert story["status"] == "APPROVED"
    await m.accept_bid(story["id"], DEV)
    return str(story["id"])


def check_run(fake: FakeGitHub, sha: str) -> dict[str, Any]:
    runs = [r for r in fake.check_runs.values() if r["head_sha"] == sha]
    assert len(runs) == 1, runs
    return runs[0]


async def test_happy_path_from_story_file_to_done(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    story = await story_row(m)
    assert (story["status"], story["title"]) == ("DRAFT", "User auth")

    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story = await story_row(m)
    assert story["status"] == "APPROVED" and story["validated_by"] == m.users[PM]
    [(title, stage, status)] = await m.rows(
        'SELECT o.title, o.stage, o.status FROM "Opportunity" o JOIN story_opportunity so ON so.opportunity_id = o.id'
    )
    assert (title, stage, status) == ("Story 1.3: User auth", "developer", "OPEN")
    await m.accept_bid(story["id"], DEV)

    await app.deliver("pull_request", m.pr("opened", 7, draft=True))
    story = await story_row(m)
    assert story["status"] == "IN_PROGRESS" and story["dev"] == m.users[DEV]  # assigned from the bid

    await app.deliver("pull_request", m.pr("ready_for_review", 7, head_sha="b" * 40))
    story = await story_row(m)
    assert (story["status"], story["pr"], story["pr_author"]) == ("READY_FOR_REVIEW", 7, DEV)
    assert story["pr_url"].endswith("/pull/7")
    assert await m.rows('SELECT status, stage, "prNumber" FROM "Deliverable"') == [("SUBMITTED", "developer", 7)]

    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    story = await story_row(m)
    assert (story["status"], story["gate"], story["reviews"]) == ("READY_FOR_REVIEW", "PASS", 1)
    assert story["gate_path"] == GATE_PATH

    await app.deliver("pull_request", m.pr("closed", 7, merged=True, head_sha="b" * 40, sender=PM))
    story = await story_row(m)
    assert story["status"] == "DONE"
    assert await m.rows('SELECT status FROM "Deliverable"') == [("APPROVED",)]
    assert await m.rows("SELECT state, expert_id FROM escrow_release_request") == [("pending", m.users[DEV])]
    assert await audit_actions(m) == [
        "story_created",
        "story_approved",
        "published_to_marketplace",
        "developer_assigned",
        "development_started",
        "submitted_for_review",
        "gate_recorded",
        "completed",
    ]
    [(from_s, to_s, meta)] = await m.rows(
        'SELECT "fromStatus", "toStatus", metadata FROM "StoryAuditLog" WHERE action = \'completed\''
    )
    assert (from_s, to_s) == ("READY_FOR_REVIEW", "DONE")
    meta = meta if isinstance(meta, dict) else __import__("json").loads(meta)
    assert meta["pr_number"] == 7 and meta["delivery_id"] == app.sent[-1] and "reason" in meta

    await show(app)
    run = check_run(fake_github, "b" * 40)
    assert run["conclusion"] == "success" and run["name"] == "BMAD story"
    assert "1.3" in run["output"]["summary"] and DEV in run["output"]["summary"]
    assert len(fake_github.comments) == 1  # one comment per PR, edited in place


async def test_merge_before_gate_completes_when_the_gate_arrives(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 8))
    await app.deliver("pull_request", m.pr("closed", 8, merged=True))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"  # merged, waiting for QA
    assert await m.rows("SELECT 1 FROM escrow_release_request") == []
    await app.deliver("push", m.push("main", {GATE_PATH: gate_file("PASS")}, QA))
    assert (await story_row(m))["status"] == "DONE"
    assert len(await m.rows("SELECT 1 FROM escrow_release_request")) == 1


async def test_gate_before_the_pr_is_opened(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    assert (await story_row(m))["status"] == "APPROVED"
    await app.deliver("pull_request", m.pr("opened", 9))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    await app.deliver("pull_request", m.pr("closed", 9, merged=True))
    assert (await story_row(m))["status"] == "DONE"


async def test_synchronize_before_opened_and_duplicates_end_in_the_same_state(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    m = market
    await approved_story(app, m)
    opened = m.pr("opened", 10, head_sha="c" * 40)
    sync = m.pr("synchronize", 10, head_sha="c" * 40)
    assert await app.deliver("pull_request", sync, guid("sync-1")) == 202
    assert await app.deliver("pull_request", opened, guid("open-1")) == 202
    assert await app.deliver("pull_request", opened, guid("open-1")) == 200  # GitHub redelivered it
    assert await app.deliver("pull_request", sync, guid("sync-1")) == 200
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    assert len(await m.rows('SELECT 1 FROM "Deliverable"')) == 1
    assert (await audit_actions(m)).count("submitted_for_review") == 1
    await show(app)
    await show(app)
    assert len(fake_github.comments) == 1
    assert len([r for r in fake_github.check_runs.values() if r["head_sha"] == "c" * 40]) == 1


async def test_fail_gate_sends_the_story_back_and_a_later_pass_completes_it(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 11))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("FAIL")}, QA))
    story = await story_row(m)
    assert (story["status"], story["gate"]) == ("IN_PROGRESS", "FAIL")
    assert await m.rows('SELECT status FROM "Deliverable"') == [("CHANGES_REQUESTED",)]
    await app.deliver("pull_request", m.pr("synchronize", 11))  # the fix, still ready for review
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    await app.deliver("pull_request", m.pr("closed", 11, merged=True))
    story = await story_row(m)
    assert (story["status"], story["reviews"]) == ("DONE", 2)


async def test_the_same_gate_version_counts_once(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 12))
    content = gate_file("PASS")
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: content}, QA))
    await app.deliver("push", m.push("main", {GATE_PATH: content}, QA))  # the same file merged to main
    assert (await story_row(m))["reviews"] == 1


async def test_closed_without_merge_rejects_the_deliverable(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 13))
    await app.deliver("pull_request", m.pr("closed", 13, merged=False))
    story = await story_row(m)
    assert story["status"] == "IN_PROGRESS" and story["pr"] is None
    assert await m.rows('SELECT status FROM "Deliverable"') == [("REJECTED",)]


async def test_converted_to_draft_goes_back_to_in_progress(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 14))
    await app.deliver("pull_request", m.pr("converted_to_draft", 14, draft=True))
    assert (await story_row(m))["status"] == "IN_PROGRESS"


async def test_a_stale_delivery_does_not_undo_a_newer_state(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    old = m.pr("converted_to_draft", 15, draft=True)
    await app.deliver("pull_request", m.pr("opened", 15))
    await app.deliver("pull_request", m.pr("ready_for_review", 15))
    newer_first = m.pr("ready_for_review", 15)
    await app.deliver("pull_request", newer_first)
    await app.deliver("pull_request", old)  # older than what we have seen: ignored
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"


# -- refusals: each changes nothing, is audited, and is explained on the PR ---------------------------


async def test_pr_by_someone_else_changes_nothing_and_says_why(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 20, author=OTHER_DEV, head_sha="d" * 40))
    story = await story_row(m)
    assert (story["status"], story["pr"]) == ("APPROVED", None)
    assert await m.rows('SELECT 1 FROM "Deliverable"') == []
    [(reason,)] = await m.rows("""SELECT metadata FROM "StoryAuditLog" WHERE action = 'transition_refused'""")
    assert OTHER_DEV in str(reason) and "not the developer assigned" in str(reason)
    await show(app)
    run = check_run(fake_github, "d" * 40)
    assert run["conclusion"] == "failure"  # never passing: merging it would bypass the marketplace
    assert "not the developer assigned" in run["output"]["summary"]


async def test_pr_by_a_non_marketplace_user_changes_nothing(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 21, author="random-person", head_sha="e" * 40))
    assert (await story_row(m))["status"] == "APPROVED"
    await show(app)
    assert "not a marketplace user" in check_run(fake_github, "e" * 40)["output"]["summary"]


async def test_bot_senders_are_ignored(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 22, sender="dependabot[bot]"))
    await app.deliver("push", m.push("main", {GATE_PATH: gate_file("PASS")}, "bmad-marketplace-app[bot]"))
    story = await story_row(m)
    assert (story["status"], story["gate"]) == ("APPROVED", None)
    await show(app)
    assert fake_github.check_runs == {}


async def test_approval_by_a_developer_is_refused(app: App, market: Market) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, DEV))
    assert (await story_row(m))["status"] == "DRAFT"
    assert "transition_refused" in await audit_actions(m)
    assert await m.rows("SELECT 1 FROM story_opportunity") == []


@pytest.mark.parametrize(
    ("pusher", "content", "problem"),
    [
        (DEV, gate_file("PASS"), "developer of story 1.3"),
        (STRANGER, gate_file("PASS"), "cannot record the QA gate"),
        (QA, "gate: [unclosed", "line"),
        (QA, gate_file("MAYBE"), "MAYBE"),
        (QA, gate_file("WAIVED"), "waiver"),
        (QA, gate_file("PASS") + "# " + "x" * 70_000 + "\n", "limit"),
    ],
    ids=["developer", "not-qa", "broken-yaml", "unknown-gate", "waived-without-waiver", "oversized"],
)
async def test_invalid_or_unauthorized_gates_change_no_story_field(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
    pusher: str,
    content: str,
    problem: str,
) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 30, head_sha="f" * 40))
    before = await story_row(m)
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: content}, pusher))
    after = await story_row(m)
    assert after == before
    assert {"gate_invalid", "transition_refused"} & set(await audit_actions(m))
    await show(app)
    run = check_run(fake_github, "f" * 40)
    assert run["conclusion"] == "failure"
    assert problem in run["output"]["summary"]


async def test_gate_for_a_story_that_does_not_exist(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 31, head_sha="9" * 40))
    await app.deliver(
        "push", m.push("story/1.3-user-auth", {"docs/qa/gates/4.2-other.yml": gate_file("PASS", story="4.2")}, QA)
    )
    await show(app)
    assert "story 4.2 does not exist" in check_run(fake_github, "9" * 40)["output"]["summary"]


async def test_unlinked_and_ambiguous_prs_are_told_how_to_link(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 40, title="Refactor", branch="cleanup", head_sha="1" * 40))
    await app.deliver(
        "pull_request", m.pr("opened", 41, title="Story 1.3 and Story 1.4", branch="x", head_sha="2" * 40)
    )
    await show(app)
    assert check_run(fake_github, "1" * 40)["conclusion"] == "neutral"
    assert "Story 1.3" in check_run(fake_github, "1" * 40)["output"]["summary"]  # how to name it
    assert check_run(fake_github, "2" * 40)["conclusion"] == "neutral"
    assert fake_github.comments == {}  # no comment on a PR that is not linked
    assert (await story_row(m))["status"] == "APPROVED"


async def test_linking_by_changed_files(app: App, market: Market, fake_github: FakeGitHub) -> None:
    from tests.github_fixtures import REPO

    m = market
    await approved_story(app, m)
    fake_github.set_pull_files(
        REPO, 42, [{"filename": STORY_PATH, "status": "modified"}, {"filename": "src/auth.py", "status": "added"}]
    )
    await app.deliver("pull_request", m.pr("opened", 42, title="Sign in", branch="feature/signin"))
    assert (await story_row(m))["pr"] == 42


async def test_story_file_removal_is_audited_not_deleted(app: App, market: Market) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: None}, PM))
    assert (await story_row(m))["status"] == "DRAFT"
    assert "story_file_removed" in await audit_actions(m)


async def test_story_ids_that_are_not_integers_are_not_stored(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    data = m.push("main", {"docs/stories/1.3A.user-auth.md": story_file("Draft")}, PM)
    await app.deliver("push", data)
    assert await m.rows('SELECT 1 FROM "Story"') == []
    await show(app)  # the person who pushed it is told, on the commit
    [run] = [r for r in fake_github.check_runs.values() if r["head_sha"] == data["after"]]
    assert (run["name"], run["conclusion"]) == ("BMAD story files", "failure")
    assert "1.3A" in run["output"]["summary"]
    [(state,)] = await m.rows("SELECT state FROM webhook_inbox ORDER BY received_at DESC LIMIT 1")
    assert state == "done"  # reported, not retried forever


async def test_custom_locations_from_the_bmad_core_config(app: App, market: Market) -> None:
    from tests.github_fixtures import REPO

    m = market
    market.fake.put_file(
        REPO, "main", ".bmad-core/core-config.yaml", b"devStoryLocation: planning/stories\nqa:\n  qaLocation: quality\n"
    )
    path = "planning/stories/1.3.user-auth.md"
    await app.deliver("push", m.push("main", {path: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {path: story_file("Approved")}, PM))
    story = await story_row(m)
    await m.accept_bid(story["id"], DEV)
    await app.deliver("pull_request", m.pr("opened", 50))
    await app.deliver("push", m.push("story/1.3-user-auth", {"quality/gates/1.3-user-auth.yml": gate_file()}, QA))
    reviewed = m.heads["story/1.3-user-auth"]
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("FAIL")}, QA))  # not a gate here
    # QA's own commit on top of the head QA accepted is covered by that review.
    await app.deliver("pull_request", m.pr("synchronize", 50, sender=QA, before=reviewed))
    await app.deliver("pull_request", m.pr("closed", 50, merged=True))
    assert (await story_row(m))["status"] == "DONE"


async def test_invalid_repo_config_is_reported_and_defaults_apply(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    from tests.github_fixtures import REPO

    m = market
    fake_github.put_file(REPO, "main", ".github/bmad-marketplace.yml", b"accepted_gates: [MAYBE]\nbogus: 1\n")
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 51, head_sha="5" * 40))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"
    await show(app)
    summary = check_run(fake_github, "5" * 40)["output"]["summary"]
    assert ".github/bmad-marketplace.yml" in summary and "bogus" in summary


async def test_concerns_completes_only_where_the_repo_allows_it(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    from tests.github_fixtures import REPO

    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 52))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("CONCERNS")}, QA))
    await app.deliver("pull_request", m.pr("closed", 52, merged=True))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"  # CONCERNS is not accepted by default
    config = "accepted_gates: [PASS, WAIVED, CONCERNS]\n"
    fake_github.put_file(REPO, "main", ".github/bmad-marketplace.yml", config.encode())
    await app.deliver("push", m.push("main", {".github/bmad-marketplace.yml": config}, PM))  # read at once
    await app.deliver(
        "push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("CONCERNS", status_reason='"minor, accepted"')}, QA)
    )
    assert (await story_row(m))["status"] == "DONE"


async def test_a_truncated_push_is_read_through_the_compare_api(
    app: App,
    market: Market,
    fake_github: FakeGitHub,
) -> None:
    from tests.github_fixtures import REPO

    m = market
    data = m.push("main", {"README.md": "hello"}, PM, before="0" * 39 + "1", commits=25)
    fake_github.put_file(REPO, data["after"], STORY_PATH, story_file("Draft").encode())
    fake_github.set_compare(
        REPO,
        data["before"],
        data["after"],
        [{"filename": STORY_PATH, "status": "added"}, {"filename": "README.md", "status": "modified"}],
    )
    await app.deliver("push", data)
    assert (await story_row(m))["status"] == "DRAFT"
    assert fake_github.requests_to("GET", f"/repos/{REPO}/compare/")


async def test_two_workers_on_one_story_stay_consistent(app: App, market: Market, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrent workers need PostgreSQL")
    from github_app.inbox.worker import Worker
    from github_app.server import default_router

    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 60))
    # Merge and gate arrive together and are handled by two workers at once.
    merge = m.pr("closed", 60, merged=True)
    gate = m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA)  # QA's commit on the merged head
    for _ in range(3):  # each also redelivered under new delivery ids
        await app.deliver("pull_request", merge, process=False)
        await app.deliver("push", gate, process=False)
    workers = [Worker(app.runtime, default_router(), concurrency=4) for _ in range(2)]
    await asyncio.gather(*(w.run_until_idle() for w in workers))
    story = await story_row(m)
    assert (story["status"], story["reviews"]) == ("DONE", 1)
    assert len(await m.rows("SELECT 1 FROM escrow_release_request")) == 1
    assert (await audit_actions(m)).count("completed") == 1
    assert await m.rows("SELECT state FROM webhook_inbox WHERE state <> 'done'") == []


async def test_waived_with_an_active_waiver_completes_and_an_expired_gate_does_not(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 70, head_sha="7" * 40))
    expired = gate_file("PASS", expires='"2020-01-01T00:00:00Z"')
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: expired}, QA))
    await app.deliver("pull_request", m.pr("closed", 70, merged=True, head_sha="7" * 40))
    assert (await story_row(m))["status"] == "READY_FOR_REVIEW"  # a stale gate does not pay anyone
    await show(app)
    assert "expired" in check_run(fake_github, "7" * 40)["output"]["summary"]
    waived = gate_file("WAIVED", waiver='{active: true, reason: "accepted risk", approved_by: "Cleo"}')
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: waived}, QA))
    story = await story_row(m)
    assert (story["status"], story["gate"], story["reviews"]) == ("DONE", "WAIVED", 2)


async def test_configuration_is_read_once_a_minute_not_per_delivery(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    from tests.github_fixtures import REPO

    m = market
    await approved_story(app, m)
    for number in range(80, 85):
        await app.deliver("pull_request", m.pr("opened", number, author=OTHER_DEV))
    reads = fake_github.requests_to("GET", f"/repos/{REPO}/contents/.github/bmad-marketplace.yml")
    assert len(reads) == 1  # seven deliveries, one read of the app's configuration
