"""Who is speaking: a GitHub login names a marketplace user only when exactly one user claims it, and
only while it is the GitHub account (numeric id) bound to that user on their first action."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from github_app.db.enums import Role
from github_app.db.models import User
from github_app.db.types import new_id
from github_app.demo.fake_github import FakeGitHub
from tests.harness import App
from tests.test_story_workflow import approved_story, audit_actions, check_run, show, story_row
from tests.workflow import DEV, GATE_PATH, PM, QA, STORY_PATH, Market, account_id, gate_file, seed_market, story_file

RECLAIMER = 987_654_321  # the GitHub account that registered a login after its owner renamed theirs


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def add_user(m: Market, login: str, role: Role) -> str:
    async with m.runtime.sessionmaker() as s, s.begin():
        user = User(id=new_id(), email=f"{login}@example.org", name=login, github_username=login, role=role)
        s.add(user)
    return user.id


async def bindings(m: Market) -> list[tuple[Any, ...]]:
    return await m.rows("SELECT user_id, account_id, login FROM github_account ORDER BY login")


async def refusals(m: Market) -> list[str]:
    rows = await m.rows("""SELECT metadata FROM "StoryAuditLog" WHERE action = 'transition_refused'""")
    return [str(r[0]) for r in rows]


async def test_the_first_action_binds_the_login_to_its_account(app: App, market: Market) -> None:
    m = market
    assert await bindings(m) == []
    await approved_story(app, m)
    assert await bindings(m) == [(m.users[PM], account_id(PM), PM)]
    await app.deliver("pull_request", m.pr("opened", 7))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    assert await bindings(m) == [
        (m.users[DEV], account_id(DEV), DEV),
        (m.users[PM], account_id(PM), PM),
        (m.users[QA], account_id(QA), QA),
    ]
    assert (await story_row(m))["gate"] == "PASS"


async def test_case_variant_duplicate_users_are_refused_as_ambiguous(app: App, market: Market) -> None:
    m = market
    await add_user(m, PM.upper(), Role.PM)  # unique as typed, the same login to GitHub
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story = await story_row(m)
    assert (story["status"], story["validated_by"]) == ("DRAFT", None)
    assert await m.rows("SELECT 1 FROM story_opportunity") == []
    [reason] = await refusals(m)
    assert f"@{PM} matches several marketplace accounts" in reason and "letter case" in reason
    assert await bindings(m) == []  # neither of them is bound to the account


async def test_a_case_variant_duplicate_of_the_author_cannot_deliver_the_story(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await approved_story(app, m)
    await add_user(m, DEV.title(), Role.DEVELOPER)
    await app.deliver("pull_request", m.pr("opened", 7, head_sha="c" * 40))
    story = await story_row(m)
    assert (story["status"], story["pr"]) == ("APPROVED", None)
    await show(app)
    assert "letter case" in check_run(fake_github, "c" * 40)["output"]["summary"]


async def test_a_reclaimed_login_cannot_record_the_gate(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 7))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("CONCERNS")}, QA))
    assert (await story_row(m))["gate"] == "CONCERNS"  # the QA's own account, now bound
    before = await story_row(m)

    # The QA renamed their GitHub account; someone else registered the old login.
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA, sender_id=RECLAIMER))
    assert await story_row(m) == before
    assert await m.rows("SELECT decision FROM gate_review") == [("CONCERNS",)]
    [reason] = await refusals(m)
    assert f"@{QA} now belongs to a different GitHub account (id {RECLAIMER})" in reason
    assert "renamed and reclaimed" in reason
    assert await m.rows("SELECT account_id FROM github_account WHERE login = :l", l=QA) == [(account_id(QA),)]


async def test_a_reclaimed_login_cannot_open_the_developers_pr_or_merge_it_into_done(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 7, draft=True))  # the developer's own account
    assert (await story_row(m))["status"] == "IN_PROGRESS"

    await app.deliver("pull_request", m.pr("opened", 8, author_id=RECLAIMER, head_sha="d" * 40))
    story = await story_row(m)
    assert (story["status"], story["pr"]) == ("IN_PROGRESS", 7)
    await show(app)
    summary = check_run(fake_github, "d" * 40)["output"]["summary"]
    assert "belongs to a different GitHub account" in summary
    assert "transition_refused" in await audit_actions(m)


async def test_a_renamed_account_is_refused_until_its_username_is_updated(app: App, market: Market) -> None:
    m = market
    await approved_story(app, m)
    await app.deliver("pull_request", m.pr("opened", 7))
    # The QA's account, bound under its old login, now acts under a new one the marketplace does not know.
    await app.deliver(
        "push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, "quinn-renamed", sender_id=account_id(QA))
    )
    story = await story_row(m)
    assert story["gate"] is None
    # Not bound yet: the QA has not acted. Bind them, then rename.
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("CONCERNS")}, QA))
    await app.deliver(
        "push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, "quinn-renamed", sender_id=account_id(QA))
    )
    assert (await story_row(m))["gate"] == "CONCERNS"
    assert any("was renamed" in r and f"@{QA}" in r for r in await refusals(m))

    # The marketplace learns the new login: the same account speaks for the QA again.
    async with m.runtime.sessionmaker() as s, s.begin():
        qa = await s.get(User, m.users[QA])
        assert qa is not None
        qa.github_username = "quinn-renamed"
    await app.deliver(
        "push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, "quinn-renamed", sender_id=account_id(QA))
    )
    assert (await story_row(m))["gate"] == "PASS"
    assert await m.rows("SELECT login FROM github_account WHERE user_id = :u", u=m.users[QA]) == [("quinn-renamed",)]
