"""Hostile or broken input through signed deliveries: each bad file is refused on its own, with its
reason, and the rest of the delivery is applied; no input stalls the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from github_app.demo.fake_github import FakeGitHub
from github_app.outbox.sender import OutboxSender
from tests.github_fixtures import REPO
from tests.harness import App
from tests.workflow import DEV, GATE_PATH, PM, QA, STORY_PATH, Market, gate_file, seed_market, story_file


def alias_bomb(key: str, levels: int = 8) -> str:
    """A few hundred bytes whose `key` expands to 9^(levels+1) items, the way `yaml.safe_load` reads it."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"{key}: [" + ",".join([f"*a{levels - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HUGE = "9" * 5000


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def show(app: App) -> None:
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()


async def stories(m: Market) -> dict[tuple[int, int], dict[str, Any]]:
    rows = await m.rows('SELECT "epicNumber", "storyNumber", title, status, "qaGateStatus", id FROM "Story"')
    return {(r[0], r[1]): {"title": r[2], "status": r[3], "gate": r[4], "id": r[5]} for r in rows}


async def last_delivery_state(m: Market) -> str:
    [(state,)] = await m.rows("SELECT state FROM webhook_inbox ORDER BY received_at DESC LIMIT 1")
    return str(state)


def story_files_run(fake: FakeGitHub, sha: str) -> dict[str, Any]:
    [run] = [r for r in fake.check_runs.values() if r["head_sha"] == sha and r["name"] == "BMAD story files"]
    return run


async def approved_story(app: App, m: Market) -> str:
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story = (await stories(m))[(1, 3)]
    await m.accept_bid(story["id"], DEV)
    return str(story["id"])


async def test_an_alias_bomb_gate_is_refused_with_its_reason(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 30, head_sha="f" * 40))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: 'story: "1.3"\n' + alias_bomb("gate")}, QA))
    assert await last_delivery_state(m) == "done"
    story = (await stories(m))[(1, 3)]
    assert (story["status"], story["gate"]) == ("READY_FOR_REVIEW", None)
    [(reason,)] = await m.rows("""SELECT metadata FROM "StoryAuditLog" WHERE action = 'gate_invalid'""")
    assert "aliases" in str(reason)
    await show(app)
    [run] = [r for r in fake_github.check_runs.values() if r["head_sha"] == "f" * 40]
    assert run["conclusion"] == "failure"
    assert "aliases (*a0) are not allowed" in run["output"]["summary"]
    # The QA fixes the file: the next delivery is handled as usual.
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    assert (await stories(m))[(1, 3)]["gate"] == "PASS"


@pytest.mark.parametrize("config_path", [".github/bmad-marketplace.yml", ".bmad-core/core-config.yaml"])
async def test_an_alias_bomb_configuration_is_reported_and_the_defaults_apply(
    app: App, market: Market, fake_github: FakeGitHub, config_path: str
) -> None:
    m = market
    fake_github.put_file(
        REPO,
        "main",
        config_path,
        alias_bomb("story_dir" if "bmad-marketplace" in config_path else "devStoryLocation").encode(),
    )
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 31, head_sha="e" * 40))
    assert (await stories(m))[(1, 3)]["status"] == "READY_FOR_REVIEW"
    await show(app)
    [run] = [r for r in fake_github.check_runs.values() if r["head_sha"] == "e" * 40]
    assert config_path in run["output"]["summary"] and "aliases" in run["output"]["summary"]


async def test_a_story_number_too_large_is_refused_and_the_rest_of_the_push_is_stored(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    data = m.push(
        "main",
        {
            f"docs/stories/3.{HUGE}.huge.md": story_file("Draft"),
            "docs/stories/heading-only.md": f"# Story 4.{HUGE}: Too big\n\n## Status\nDraft\n",
            STORY_PATH: story_file("Draft"),
        },
        PM,
    )
    await app.deliver("push", data)
    assert await last_delivery_state(m) == "done"
    assert list(await stories(m)) == [(1, 3)]
    await show(app)
    run = story_files_run(fake_github, data["after"])
    assert run["conclusion"] == "failure"
    summary = run["output"]["summary"]
    assert "2 story file(s) not stored" in summary
    assert summary.count("too large") == 2  # the file name and the heading
    assert "(5002 characters)" in summary  # the offending number is shown cut short


async def test_a_story_number_above_the_integer_range_is_refused(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    data = m.push(
        "main",
        {
            "docs/stories/intro.md": story_file("Draft", epic=1, number=2**31),
            "docs/stories/2.1.fine.md": story_file("Draft", epic=2, number=1),
        },
        PM,
    )
    await app.deliver("push", data)
    assert await last_delivery_state(m) == "done"
    assert list(await stories(m)) == [(2, 1)]
    await show(app)
    summary = story_files_run(fake_github, data["after"])["output"]["summary"]
    assert "1.2147483648 is too large; epic and story numbers go up to 2147483647" in summary


async def test_control_characters_in_a_title_are_dropped_not_fatal(app: App, market: Market) -> None:
    m = market
    data = m.push(
        "main",
        {
            STORY_PATH: story_file("Draft", title="User\x00 auth\x07"),
            "docs/stories/2.1.other.md": story_file("Draft", title="Other", epic=2, number=1),
        },
        PM,
    )
    await app.deliver("push", data)
    assert await last_delivery_state(m) == "done"
    found = await stories(m)
    assert (found[(1, 3)]["title"], found[(2, 1)]["title"]) == ("User auth", "Other")


async def test_a_file_that_fails_unexpectedly_is_refused_alone(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    data = m.push(
        "main",
        {"docs/stories/2.1.other.md": story_file("Draft", title="Other", epic=2, number=1), GATE_PATH: gate_file()},
        QA,
    )
    # A commit time that cannot be converted to UTC: nothing in the gate file itself is wrong.
    data["commits"][-1]["timestamp"] = data["head_commit"]["timestamp"] = "0001-01-01T00:00:00+01:00"
    await app.deliver("push", data)
    assert await last_delivery_state(m) == "done"
    found = await stories(m)
    assert set(found) == {(1, 3), (2, 1)} and found[(1, 3)]["gate"] is None
    actions = [
        r[0] for r in await m.rows('SELECT action FROM "StoryAuditLog" WHERE "storyId" = :s', s=found[(1, 3)]["id"])
    ]
    assert "file_refused" in actions
    await show(app)
    run = story_files_run(fake_github, data["after"])
    assert run["conclusion"] == "failure" and f"{GATE_PATH}: not applied" in run["output"]["summary"]


async def test_a_pr_body_of_endless_whitespace_is_read_in_one_pass(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 40, title="Work", body="story" + " " * 65_000, branch="x"))
    assert (await stories(m))[(1, 3)]["status"] == "APPROVED"  # not linked
    await app.deliver("pull_request", m.pr("opened", 41, title="Work", body="Story" + " " * 65_000 + "1.3", branch="y"))
    assert (await stories(m))[(1, 3)]["status"] == "READY_FOR_REVIEW"


async def test_a_catastrophic_branch_pattern_runs_in_linear_time(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    # On a backtracking engine this pattern takes 2^n steps on a branch of n digits that does not match.
    fake_github.put_file(
        REPO, "main", ".github/bmad-marketplace.yml", b"branch_pattern: '^(?P<epic>(\\d+)+)\\.(?P<story>\\d+)$'\n"
    )
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 42, title="Work", branch="1" * 40 + "!"))
    assert (await stories(m))[(1, 3)]["status"] == "APPROVED"
    await app.deliver("pull_request", m.pr("opened", 43, title="Work", branch="1.3"))
    assert (await stories(m))[(1, 3)]["status"] == "READY_FOR_REVIEW"


async def test_a_branch_pattern_that_needs_backtracking_is_reported(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    fake_github.put_file(
        REPO, "main", ".github/bmad-marketplace.yml", b"branch_pattern: '(?P<epic>\\d+)\\.(?P<story>\\d+)(?=-)'\n"
    )
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 44, head_sha="d" * 40))
    await show(app)
    [run] = [r for r in fake_github.check_runs.values() if r["head_sha"] == "d" * 40]
    assert "RE2 syntax" in run["output"]["summary"]


async def test_a_refused_story_file_is_on_its_storys_record(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    oversized = story_file("Approved") + "x" * (512 * 1024)
    data = m.push(
        "main", {STORY_PATH: oversized, "docs/stories/2.1.other.md": story_file("Draft", epic=2, number=1)}, PM
    )
    await app.deliver("push", data)
    found = await stories(m)
    assert set(found) == {(1, 3), (2, 1)} and found[(1, 3)]["status"] == "DRAFT"
    [(reason,)] = await m.rows(
        """SELECT metadata FROM "StoryAuditLog" WHERE action = 'file_refused' AND "storyId" = :s""",
        s=found[(1, 3)]["id"],
    )
    assert "byte limit" in str(reason)
    await show(app)
    assert story_files_run(fake_github, data["after"])["conclusion"] == "failure"


async def test_a_value_the_database_refuses_is_refused_with_its_file(
    app: App, market: Market, fake_github: FakeGitHub, is_postgres: bool
) -> None:
    m = market
    # Git never makes such a path, but nothing in the database may depend on that: PostgreSQL refuses NUL
    # in text, so there the file is refused on its own; SQLite stores it.
    odd = "docs/stories/1.4.nul\x00name.md"
    data = m.push("main", {odd: story_file("Draft", epic=1, number=4), STORY_PATH: story_file("Draft")}, PM)
    await app.deliver("push", data)
    assert await last_delivery_state(m) == "done"
    assert set(await stories(m)) == ({(1, 3)} if is_postgres else {(1, 3), (1, 4)})
    if is_postgres:
        await show(app)
        summary = story_files_run(fake_github, data["after"])["output"]["summary"]
        assert "docs/stories/1.4.nulname.md: not applied" in summary and "0x00" in summary
