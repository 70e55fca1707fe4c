"""The GitHub outbox against the fake GitHub and a real database (SQLite, or PostgreSQL when
TEST_DATABASE_URL names one): coalescing, adoption after a lost answer, recreation of a deleted
comment, rate limits, pacing, and the content-creation budget."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from github_app.db.app_tables import OutboxItem
from github_app.db.types import utcnow
from github_app.demo.fake_github import FakeGitHub
from github_app.github.client import GitHubApp
from github_app.outbox import KIND_CHECK_RUN, KIND_PR_COMMENT, set_desired
from github_app.outbox.pace import BUDGET, PENALTY, Limits, PaceState, Plan, plan
from github_app.outbox.sender import OutboxSender
from github_app.presentation import CHECK_RUN_NAME, COMMENT_MARKER
from github_app.runtime import Runtime
from tests.github_fixtures import FAST_RETRY, GITHUB_APP_ID, INSTALLATION_ID, REPO, KeyPair
from tests.waits import until

ROOT = Path(__file__).resolve().parent.parent
SHA = "a" * 40
RUNS = f"/repos/{REPO}/check-runs"


def run_payload(
    title: str = "Waiting for QA", *, sha: str = SHA, conclusion: str = "neutral", summary: str = "| | |\n|---|---|"
) -> dict[str, Any]:
    return {
        "name": CHECK_RUN_NAME,
        "head_sha": sha,
        "status": "completed",
        "conclusion": conclusion,
        "output": {"title": title, "summary": summary},
    }


async def desire(rt: Runtime, kind: str, target: str, payload: dict[str, Any]) -> bool:
    async with rt.sessionmaker() as session, session.begin():
        return await set_desired(
            session, installation_id=INSTALLATION_ID, repository=REPO, kind=kind, target=target, payload=payload
        )


async def lock_waits(rt: Runtime) -> int:
    """How many sessions of this database wait for a lock (PostgreSQL)."""
    async with rt.engine.connect() as conn:
        stmt = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return int((await conn.execute(text(stmt))).scalar_one())


async def outbox_row(rt: Runtime, kind: str, target: str) -> OutboxItem:
    async with rt.sessionmaker() as session:
        found = await session.scalar(
            select(OutboxItem).where(
                OutboxItem.repository == REPO, OutboxItem.kind == kind, OutboxItem.target == target
            )
        )
    assert found is not None
    return found


async def change_row(rt: Runtime, kind: str, target: str, **values: Any) -> None:
    async with rt.engine.begin() as conn:
        await conn.execute(
            update(OutboxItem)
            .where(OutboxItem.repository == REPO, OutboxItem.kind == kind, OutboxItem.target == target)
            .values(**values)
        )


def make_sender(rt: Runtime, **overrides: Any) -> OutboxSender:
    options: dict[str, Any] = {
        "name": "test-sender",
        "writes_per_second": 200.0,
        "retry_base_seconds": 0.01,
        "poll_seconds": 0.02,
    }
    options.update(overrides)
    return OutboxSender(rt, **options)


def app_runs(fake: FakeGitHub, sha: str = SHA) -> list[dict[str, Any]]:
    return [run for run in fake.check_runs.values() if run["head_sha"] == sha and run["app"]["id"] == GITHUB_APP_ID]


def bot_comments(fake: FakeGitHub, number: int) -> list[dict[str, Any]]:
    return [c for c in fake.comments.values() if c["issue_number"] == number and c["user"]["type"] == "Bot"]


# --- enqueue -----------------------------------------------------------------------------------------


async def test_identical_payload_is_not_a_change(runtime: Runtime) -> None:
    assert await desire(runtime, KIND_CHECK_RUN, SHA, run_payload("one"))
    # Key order does not matter: payloads are compared in one canonical spelling.
    reordered = dict(reversed(list(run_payload("one").items())))
    assert not await desire(runtime, KIND_CHECK_RUN, SHA, reordered)
    row = await outbox_row(runtime, KIND_CHECK_RUN, SHA)
    assert (row.version, row.sent_version) == (1, 0)

    assert await desire(runtime, KIND_CHECK_RUN, SHA, run_payload("two"))
    assert (await outbox_row(runtime, KIND_CHECK_RUN, SHA)).version == 2


async def test_unknown_kind_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError):
        await desire(runtime, "status", SHA, {})


async def test_concurrent_first_inserts_of_one_target_both_succeed(runtime: Runtime) -> None:
    async with runtime.sessionmaker() as first, first.begin():
        assert await set_desired(
            first,
            installation_id=INSTALLATION_ID,
            repository=REPO,
            kind=KIND_PR_COMMENT,
            target="9",
            payload={"body": "first"},
        )
        # The second transaction waits for the first one's row, then updates it instead of failing.
        second = asyncio.create_task(desire(runtime, KIND_PR_COMMENT, "9", {"body": "second"}))
        if runtime.is_sqlite:  # one writer: the second waits for the database's write lock
            await asyncio.sleep(0)
        else:  # seen waiting on the first one's row lock
            await until(lambda: lock_waits(runtime), what="the second transaction waiting for the row lock")
        assert not second.done()
    assert await second
    row = await outbox_row(runtime, KIND_PR_COMMENT, "9")
    assert (row.version, row.payload) == (2, '{"body":"second"}')


# --- check runs ----------------------------------------------------------------------------------------


async def test_a_burst_of_changes_costs_one_create(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    for i in range(20):
        assert await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload(f"state {i}"))
    await make_sender(app_runtime).run_until_idle(timeout=10)

    assert len(fake_github.requests_to("POST", RUNS)) == 1
    assert fake_github.requests_to("PATCH", RUNS) == []
    [run] = app_runs(fake_github)
    assert run["output"]["title"] == "state 19"
    assert run["conclusion"] == "neutral"
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert (row.version, row.sent_version, row.remote_id, row.attempts) == (20, 20, run["id"], 0)
    assert row.lease_owner is None and row.sent_at is not None


async def test_a_change_after_sending_is_one_patch(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    sender = make_sender(app_runtime)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("waiting"))
    await sender.run_until_idle(timeout=10)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("accepted", conclusion="success"))
    await sender.run_until_idle(timeout=10)

    [run] = app_runs(fake_github)
    [patch] = fake_github.requests_to("PATCH", RUNS)
    assert patch.path == f"{RUNS}/{run['id']}"
    assert "head_sha" not in patch.json
    assert (run["conclusion"], run["output"]["title"]) == ("success", "accepted")
    assert len(fake_github.requests_to("POST", RUNS)) == 1


async def test_an_identical_payload_sends_nothing(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    sender = make_sender(app_runtime)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("waiting"))
    await sender.run_until_idle(timeout=10)
    before = len(fake_github.requests)

    assert not await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("waiting"))
    await sender.run_until_idle(timeout=10)
    assert len(fake_github.requests) == before


async def test_a_run_created_before_a_crash_is_adopted(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    # GitHub has the run (the POST went through) but the answer never reached the database; another
    # app's run of the same name is not ours to touch.
    lost = fake_github.add_check_run(REPO, SHA, CHECK_RUN_NAME, status="in_progress", external_id=SHA)
    other = fake_github.add_check_run(REPO, SHA, CHECK_RUN_NAME, app_id=999, conclusion="failure")
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("adopted", conclusion="success"))
    await make_sender(app_runtime).run_until_idle(timeout=10)

    assert fake_github.requests_to("POST", RUNS) == []
    assert [r.path for r in fake_github.requests_to("PATCH", RUNS)] == [f"{RUNS}/{lost['id']}"]
    assert app_runs(fake_github) == [lost]
    assert (lost["conclusion"], lost["output"]["title"]) == ("success", "adopted")
    assert other["conclusion"] == "failure" and other["output"]["title"] is None
    assert (await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)).remote_id == lost["id"]


async def test_a_create_whose_answer_is_lost_makes_one_run(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    # GitHub creates the run, then answers 502 (twice: on the create and on its retry, if any).
    fake_github.lose_answer_next(2, path=RUNS)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("waiting"))
    await make_sender(app_runtime).run_until_idle(timeout=10)

    [run] = app_runs(fake_github)
    assert len(fake_github.requests_to("POST", RUNS)) == 1
    assert run["external_id"] == SHA and run["output"]["title"] == "waiting"
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert (row.remote_id, row.sent_version, row.attempts) == (run["id"], 1, 0)


async def test_a_lost_create_is_adopted_by_its_own_target_only(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    # Two targets showing a run of the same name on one commit (two PRs on one head): each finds its
    # own run by the target it carries, never the other's.
    first, second = f"{SHA}:pr-1", f"{SHA}:pr-2"
    await desire(app_runtime, KIND_CHECK_RUN, first, run_payload("first"))
    sender = make_sender(app_runtime)
    await sender.run_until_idle(timeout=10)
    fake_github.lose_answer_next(1, path=RUNS)
    await desire(app_runtime, KIND_CHECK_RUN, second, run_payload("second"))
    await sender.run_until_idle(timeout=10)

    runs = sorted(app_runs(fake_github), key=lambda run: run["id"])
    assert [(run["external_id"], run["output"]["title"]) for run in runs] == [(first, "first"), (second, "second")]
    assert (await outbox_row(app_runtime, KIND_CHECK_RUN, second)).remote_id == runs[1]["id"]


async def test_a_comment_whose_answer_is_lost_is_posted_once(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    comments = f"/repos/{REPO}/issues/4/comments"
    fake_github.lose_answer_next(2, path=comments)
    await desire(app_runtime, KIND_PR_COMMENT, "4", {"body": f"{COMMENT_MARKER}\nwaiting for QA"})
    await make_sender(app_runtime).run_until_idle(timeout=10)

    [comment] = bot_comments(fake_github, 4)
    assert len(fake_github.requests_to("POST", comments)) == 1
    # The search after the lost answer asks only for comments made since shortly before it.
    assert any("since" in r.query for r in fake_github.requests_to("GET", comments))
    row = await outbox_row(app_runtime, KIND_PR_COMMENT, "4")
    assert (row.remote_id, row.sent_version) == (comment["id"], 1)


async def test_a_create_that_never_reached_github_is_made_later(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    # A 502 that created nothing: the row fails once, and its next attempt looks again, then creates.
    fake_github.fail_next(1, 502, path=RUNS)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("waiting"))
    await make_sender(app_runtime).run_until_idle(timeout=10)

    assert [r.status for r in fake_github.requests_to("POST", RUNS)] == [502, 201]
    assert len(app_runs(fake_github)) == 1


async def test_a_send_whose_id_was_lost_is_not_repeated(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    sender = make_sender(app_runtime)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("one"))
    await sender.run_until_idle(timeout=10)
    # As if the process died after GitHub answered and before the row recorded it.
    await change_row(app_runtime, KIND_CHECK_RUN, SHA, remote_id=None, sent_version=0, next_attempt_at=utcnow())
    await sender.run_until_idle(timeout=10)

    assert len(fake_github.requests_to("POST", RUNS)) == 1
    assert len(app_runs(fake_github)) == 1


async def test_a_change_during_a_send_is_sent_after_it(
    app_runtime: Runtime, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = make_sender(app_runtime)
    deliver = sender._deliver
    changed: list[bool] = []

    async def deliver_while_changing(*args: Any) -> Any:
        if not changed:  # a handler commits a newer state while the first one is on its way
            changed.append(await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("newer")))
        return await deliver(*args)

    monkeypatch.setattr(sender, "_deliver", deliver_while_changing)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("older"))
    await sender.run_until_idle(timeout=10)

    assert changed == [True]
    [post] = fake_github.requests_to("POST", RUNS)
    [patch] = fake_github.requests_to("PATCH", RUNS)
    # The claimed payload was "older"; the row's latest, read when claimed again, is "newer".
    assert (post.json["output"]["title"], patch.json["output"]["title"]) == ("older", "newer")
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert (row.version, row.sent_version) == (2, 2)


async def test_long_output_is_cut_to_githubs_byte_limit(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload(summary="é" * 40_000))
    await make_sender(app_runtime).run_until_idle(timeout=10)
    [run] = app_runs(fake_github)
    assert len(run["output"]["summary"].encode()) <= 65535
    assert run["output"]["summary"].endswith("(truncated)")


# --- the PR comment --------------------------------------------------------------------------------------


async def test_one_comment_edited_in_place_and_recreated_when_deleted(
    app_runtime: Runtime, fake_github: FakeGitHub
) -> None:
    sender = make_sender(app_runtime)
    comments = f"/repos/{REPO}/issues/7/comments"
    await desire(app_runtime, KIND_PR_COMMENT, "7", {"body": f"{COMMENT_MARKER}\nwaiting for QA"})
    await sender.run_until_idle(timeout=10)
    [first] = bot_comments(fake_github, 7)

    await desire(app_runtime, KIND_PR_COMMENT, "7", {"body": f"{COMMENT_MARKER}\naccepted"})
    await sender.run_until_idle(timeout=10)
    assert bot_comments(fake_github, 7) == [first] and first["body"].endswith("accepted")
    assert len(fake_github.requests_to("POST", comments)) == 1

    fake_github.delete_comment(first["id"])
    await desire(app_runtime, KIND_PR_COMMENT, "7", {"body": f"{COMMENT_MARKER}\nmerged"})
    await sender.run_until_idle(timeout=10)

    [second] = bot_comments(fake_github, 7)
    assert second["id"] != first["id"] and second["body"].endswith("merged")
    assert len(fake_github.requests_to("POST", comments)) == 2
    assert (await outbox_row(app_runtime, KIND_PR_COMMENT, "7")).remote_id == second["id"]


async def test_the_marker_is_added_when_missing(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    await desire(app_runtime, KIND_PR_COMMENT, "8", {"body": "no marker here"})
    await make_sender(app_runtime).run_until_idle(timeout=10)
    [comment] = bot_comments(fake_github, 8)
    assert comment["body"].startswith(COMMENT_MARKER) and comment["body"].endswith("no marker here")


async def test_a_human_comment_with_the_marker_is_not_adopted(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    quoted = f"copied from the bot: {COMMENT_MARKER} ha"
    human = fake_github.add_comment(REPO, 5, quoted, "mallory")
    await desire(app_runtime, KIND_PR_COMMENT, "5", {"body": f"{COMMENT_MARKER}\nstatus"})
    await make_sender(app_runtime).run_until_idle(timeout=10)

    assert human["body"] == quoted
    [ours] = bot_comments(fake_github, 5)
    assert ours["user"]["login"] == fake_github.bot_login
    assert fake_github.requests_to("PATCH", f"/repos/{REPO}/issues/comments") == []


async def test_the_apps_earlier_comment_is_adopted(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    for n in range(35):  # the app's comment is on the second page
        fake_github.add_comment(REPO, 6, f"comment {n}", "alice")
    earlier = fake_github.add_comment(REPO, 6, f"{COMMENT_MARKER}\nold", fake_github.bot_login, "Bot")
    await desire(app_runtime, KIND_PR_COMMENT, "6", {"body": f"{COMMENT_MARKER}\nnew"})
    await make_sender(app_runtime).run_until_idle(timeout=10)

    assert fake_github.requests_to("POST", f"/repos/{REPO}/issues/6/comments") == []
    assert earlier["body"] == f"{COMMENT_MARKER}\nnew"
    assert (await outbox_row(app_runtime, KIND_PR_COMMENT, "6")).remote_id == earlier["id"]


# --- limits and failures -----------------------------------------------------------------------------------


async def test_secondary_rate_limit_is_outlasted(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    # More refusals than the client retries: the row fails once, backs off, and goes through.
    fake_github.rate_limit_next(5, retry_after=0, path=RUNS)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload())
    await make_sender(app_runtime).run_until_idle(timeout=10)

    assert [r.status for r in fake_github.requests_to("POST", RUNS)] == [403] * 5 + [201]
    assert len(app_runs(fake_github)) == 1
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert (row.sent_version, row.attempts) == (1, 0)


async def test_retry_after_is_honoured(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    fake_github.rate_limit_next(1, retry_after=1, path=RUNS)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload())
    await make_sender(app_runtime).run_until_idle(timeout=10)
    limited, created = fake_github.requests_to("POST", RUNS)
    assert (limited.status, created.status) == (403, 201)
    assert created.at - limited.at >= 0.9


async def test_a_failure_backs_off_and_keeps_its_error(
    app_runtime: Runtime, fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    broken = run_payload()
    del broken["name"]  # GitHub answers 422
    await desire(app_runtime, KIND_CHECK_RUN, SHA, broken)
    await change_row(app_runtime, KIND_CHECK_RUN, SHA, attempts=4)
    with caplog.at_level(logging.WARNING, logger="github_app.outbox.sender"):
        await make_sender(app_runtime, retry_base_seconds=60.0).run_until_idle(timeout=2)

    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert (row.attempts, row.sent_version, row.lease_owner) == (5, 0, None)
    assert row.last_error and "422" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(seconds=60)
    # From the fifth failed attempt on, someone should look.
    failures = [r.levelno for r in caplog.records if r.message.startswith("outbox send failed")]
    assert failures == [logging.ERROR]


async def test_writes_are_paced(
    app_runtime: Runtime, second_runtime: Runtime, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(8):
        await desire(app_runtime, KIND_CHECK_RUN, f"{i:040x}", run_payload(sha=f"{i:040x}"))
    senders = [
        OutboxSender(rt, name=f"sender-{n}", writes_per_second=20.0, poll_seconds=0.02)
        for n, rt in enumerate((app_runtime, second_runtime))
    ]
    slots: list[float] = []
    for sender in senders:
        reserve = sender.pace.before_write

        async def recorded(scope: str, *, create: bool, reserve: Any = reserve) -> Plan:
            decided: Plan = await reserve(scope, create=create)
            slots.append(decided.at)
            return decided

        monkeypatch.setattr(sender.pace, "before_write", recorded)
    await asyncio.gather(*(sender.run_until_idle(timeout=10) for sender in senders))

    assert len(fake_github.write_requests) == 8
    # Two senders with their own database connections, one pace: the slots they reserved in the shared
    # row are a whole interval apart.
    assert len(slots) == 8
    ordered = sorted(slots)
    assert all(later - earlier >= 0.05 - 1e-6 for earlier, later in zip(ordered, ordered[1:], strict=False))


async def test_new_comments_wait_for_the_creation_budget(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    sender = make_sender(app_runtime, creates_per_minute=2)
    for number in ("1", "2", "3"):
        await desire(app_runtime, KIND_PR_COMMENT, number, {"body": f"{COMMENT_MARKER}\nPR {number}"})
    await sender.run_until_idle(timeout=3)

    assert len([r for r in fake_github.write_requests if r.method == "POST"]) == 2
    held = [await outbox_row(app_runtime, KIND_PR_COMMENT, n) for n in ("1", "2", "3")]
    [waiting] = [row for row in held if row.sent_version < row.version]
    assert waiting.attempts == 0 and waiting.lease_owner is None
    assert waiting.next_attempt_at > utcnow() + timedelta(seconds=30)

    # Editing an existing comment creates no content: it is not held back.
    [sent] = [row for row in held if row.sent_version == row.version][:1]
    await desire(app_runtime, KIND_PR_COMMENT, sent.target, {"body": f"{COMMENT_MARKER}\nedited"})
    await sender.run_until_idle(timeout=3)
    assert fake_github.comments[sent.remote_id or 0]["body"].endswith("edited")
    assert len([r for r in fake_github.write_requests if r.method == "POST"]) == 2


@pytest.fixture
async def second_runtime(app_runtime: Runtime) -> AsyncIterator[Runtime]:
    """Another process's view of the same database: its own engine and GitHub client."""
    other = await Runtime.create(app_runtime.settings)
    other.github = GitHubApp(
        GITHUB_APP_ID,
        app_runtime.settings.github_private_key or "",
        app_runtime.settings.github_api_url,
        other.http,
        retry_policy=FAST_RETRY,
    )
    yield other
    await other.close()


async def test_two_senders_share_one_creation_budget(
    app_runtime: Runtime, second_runtime: Runtime, fake_github: FakeGitHub
) -> None:
    for number in range(1, 9):
        await desire(app_runtime, KIND_PR_COMMENT, str(number), {"body": f"{COMMENT_MARKER}\nPR {number}"})
    first = OutboxSender(app_runtime, name="sender-1", writes_per_second=200.0, creates_per_minute=3)
    second = OutboxSender(second_runtime, name="sender-2", writes_per_second=200.0, creates_per_minute=3)
    await asyncio.gather(first.run_until_idle(timeout=3), second.run_until_idle(timeout=3))

    # Three a minute for the app, not three per sender.
    assert len([r for r in fake_github.write_requests if r.method == "POST"]) == 3
    assert len(fake_github.comments) == 3
    # A comment the budget refuses is put back before its lookup costs a request.
    lookups = [r for r in fake_github.requests if r.method == "GET" and r.path.endswith("/comments")]
    assert len(lookups) < 8


async def test_two_sender_processes_share_one_creation_budget(
    app_runtime: Runtime, fake_github: FakeGitHub, github_app_keys: KeyPair, is_postgres: bool, tmp_path: Path
) -> None:
    if not is_postgres:
        pytest.skip("SQLite serves one process")
    for number in range(1, 9):
        await desire(app_runtime, KIND_PR_COMMENT, str(number), {"body": f"{COMMENT_MARKER}\nPR {number}"})
    key_file = tmp_path / "app.pem"
    key_file.write_text(github_app_keys.private_pem)
    url = app_runtime.settings.database_url
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.sender_process", url, fake_github.url, str(key_file), f"p{n}", "3", cwd=ROOT
        )
        for n in (1, 2)
    ]
    assert [await asyncio.wait_for(p.wait(), 60) for p in processes] == [0, 0]

    # Machines apart, one budget: three new comments a minute for the app.
    assert len([r for r in fake_github.write_requests if r.method == "POST"]) == 3
    assert len(fake_github.comments) == 3


async def test_a_rate_limit_told_to_one_sender_holds_every_sender(
    app_runtime: Runtime, second_runtime: Runtime, fake_github: FakeGitHub
) -> None:
    fake_github.rate_limit_next(1, retry_after=60, path=RUNS)
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload())
    await make_sender(app_runtime).run_until_idle(timeout=1)
    [limited] = fake_github.requests_to("POST", RUNS)
    assert limited.status == 403
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    # Not a failure: put back until GitHub's wait is over.
    assert (row.attempts, row.last_error) == (0, None)
    assert row.next_attempt_at > utcnow() + timedelta(seconds=50)

    # Another process's sender, with a row of its own, sends nothing until then either.
    other_sha = "b" * 40
    await desire(second_runtime, KIND_CHECK_RUN, other_sha, run_payload(sha=other_sha))
    await make_sender(second_runtime).run_until_idle(timeout=1)
    assert len(fake_github.write_requests) == 1
    held = await outbox_row(second_runtime, KIND_CHECK_RUN, other_sha)
    assert held.sent_version == 0 and held.next_attempt_at > utcnow() + timedelta(seconds=50)


async def test_a_row_leased_by_another_sender_is_left_alone(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload())
    await change_row(
        app_runtime, KIND_CHECK_RUN, SHA, lease_owner="elsewhere", lease_expires_at=utcnow() + timedelta(minutes=2)
    )
    sender = make_sender(app_runtime)
    await sender.run_until_idle(timeout=1)
    assert fake_github.write_requests == []

    # Its sender died: the lease runs out and the row is taken over.
    await change_row(app_runtime, KIND_CHECK_RUN, SHA, lease_expires_at=utcnow() - timedelta(seconds=1))
    await sender.run_until_idle(timeout=5)
    assert len(app_runs(fake_github)) == 1


async def test_two_senders_share_the_rows(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    shas = [f"{i:040x}" for i in range(12)]
    for sha in shas:
        await desire(app_runtime, KIND_CHECK_RUN, sha, run_payload(sha=sha))
    first, second = make_sender(app_runtime), make_sender(app_runtime)
    first.name, second.name = "sender-1", "sender-2"
    await asyncio.gather(first.run_until_idle(timeout=20), second.run_until_idle(timeout=20))

    posts = fake_github.requests_to("POST", RUNS)
    assert sorted(r.json["head_sha"] for r in posts) == shas
    assert all(len(app_runs(fake_github, sha)) == 1 for sha in shas)


async def test_a_row_locked_by_a_handler_is_skipped(
    app_runtime: Runtime, fake_github: FakeGitHub, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("SQLite has one writer: a claim waits for the handler's transaction instead")
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload("committed"))
    sender = make_sender(app_runtime)
    async with app_runtime.sessionmaker() as handler, handler.begin():
        await set_desired(
            handler,
            installation_id=INSTALLATION_ID,
            repository=REPO,
            kind=KIND_CHECK_RUN,
            target=SHA,
            payload=run_payload("in the handler's transaction"),
        )
        # The claim does not wait for the handler's row lock, and sends nothing meanwhile. One pass
        # (timeout 0); the bound turns a claim that waits for the lock this test holds into a failure.
        await asyncio.wait_for(sender.run_until_idle(timeout=0), 30)
        assert fake_github.write_requests == []
    await sender.run_until_idle(timeout=5)
    [run] = app_runs(fake_github)
    assert run["output"]["title"] == "in the handler's transaction"


async def test_a_send_slower_than_its_lease_keeps_its_row_and_goes_out_once(
    app_runtime: Runtime, fake_github: FakeGitHub
) -> None:
    await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload())
    sender = make_sender(app_runtime, lease_seconds=0.5, heartbeat_seconds=0.1)
    fake_github.hold_writes()  # GitHub takes its time to answer the create
    sending = asyncio.create_task(sender.run_until_idle(timeout=30))
    await until(lambda: fake_github.writes_waiting == 1)
    first_lease = (await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)).lease_expires_at
    await until(lambda: utcnow() > first_lease + timedelta(seconds=0.5))  # the lease it was claimed with is over
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert row.lease_owner == "test-sender" and row.lease_expires_at > utcnow()  # nobody else can claim it
    rival = make_sender(app_runtime, name="rival", lease_seconds=0.5)
    assert await rival._claim() is None
    fake_github.release_writes()
    await asyncio.wait_for(sending, 10)
    assert len(app_runs(fake_github)) == 1
    row = await outbox_row(app_runtime, KIND_CHECK_RUN, SHA)
    assert (row.sent_version, row.lease_owner) == (row.version, None)


def count_steps(sender: OutboxSender) -> list[bool]:
    """What each of the sender's passes over the outbox returned (True: it sent a row)."""
    steps: list[bool] = []
    step = sender._step

    async def counted() -> bool:
        steps.append(await step())
        return steps[-1]

    sender._step = counted  # type: ignore[method-assign]
    return steps


async def test_without_github_rows_stay_pending(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    assert runtime.github is None
    await desire(runtime, KIND_CHECK_RUN, SHA, run_payload())
    sender = make_sender(runtime)
    steps = count_steps(sender)
    await sender.run_until_idle(timeout=10)
    assert steps == [False]  # one look, then back: not polling a due row until the 10 s are over

    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="github_app.outbox.sender"):
        polls = 0
        unconfigured = sender._github

        def counted() -> Any:
            nonlocal polls
            polls += 1
            return unconfigured()

        sender._github = counted  # type: ignore[method-assign]
        task = asyncio.create_task(sender.run(stop))
        await until(lambda: polls >= 4, what="four polls")
        stop.set()
        await asyncio.wait_for(task, 2)
    row = await outbox_row(runtime, KIND_CHECK_RUN, SHA)
    assert (row.sent_version, row.attempts, row.lease_owner) == (0, 0, None)
    # Said once, not once per poll.
    assert len([r for r in caplog.records if "not configured" in r.message]) == 1


async def test_run_sends_until_stopped(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    sender = make_sender(app_runtime, poll_seconds=3600.0)  # only a wake can bring it back within the test
    steps = count_steps(sender)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await until(lambda: steps == [False], what="the sender's first, empty pass")
        await desire(app_runtime, KIND_CHECK_RUN, SHA, run_payload())
        sender.wake()
        await until(lambda: app_runs(fake_github), what="the check run sent after the wake")
        assert len(app_runs(fake_github)) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert steps[:2] == [False, True]


# --- the pace's arithmetic --------------------------------------------------------------------------------


def test_plan_spaces_writes_and_counts_creates_in_windows() -> None:
    limits = Limits.of(2.0, 2, 3)
    state = PaceState()
    state, first = plan(state, limits, 0.0, create=False)
    state, second = plan(state, limits, 0.0, create=False)
    assert (first.wait, second.wait) == (0.0, 0.5)  # the second write waits for its slot

    state, _ = plan(state, limits, 0.5, create=True)  # its slot is at 1.0
    state, _ = plan(state, limits, 10.0, create=True)
    state, held = plan(state, limits, 10.0, create=True)
    assert held.defer == pytest.approx(51.0) and held.reason == BUDGET  # the first leaves the minute at 61.0
    state, _ = plan(state, limits, 61.5, create=True)
    state, held = plan(state, limits, 181.5, create=True)
    assert held.defer == pytest.approx(3600 - 181.5 + 1.0)  # three in the hour
    assert plan(PaceState(next_write_at=5.0), limits, 4.0, create=False)[1] == Plan(wait=1.0, at=5.0)

    penalised = PaceState(not_before=200.0)
    assert plan(penalised, limits, 190.0, create=False)[1] == Plan(defer=10.0, reason=PENALTY)
    with pytest.raises(ValueError):
        Limits.of(0, 1, 1)
