"""installation and installation_repositories keep GitHubInstallation and the repository map current."""

from __future__ import annotations

import logging

import pytest

from github_app.db.queries import installation_for_repository
from tests.conftest import fetch_all
from tests.deliveries import guid, payload
from tests.fake_github import FakeGitHub
from tests.github_fixtures import INSTALLATION_ID, REPO
from tests.harness import App
from tests.workflow import PM, STORY_PATH, seed_market, story_file


async def installations(a: App) -> list[tuple[object, ...]]:
    return await fetch_all(a.runtime, 'SELECT "installationId", "accountId", "accountLogin" FROM "GitHubInstallation"')


async def repositories(a: App) -> list[tuple[object, ...]]:
    return await fetch_all(
        a.runtime, "SELECT installation_id, full_name FROM installation_repository ORDER BY full_name"
    )


async def suspended(a: App, installation_id: int) -> bool:
    rows = await fetch_all(
        a.runtime, "SELECT suspended_at FROM installation_status WHERE installation_id = :i", i=installation_id
    )
    return bool(rows and rows[0][0] is not None)


async def test_installation_created_records_installation_and_repositories(app: App) -> None:
    assert await app.deliver("installation", payload("installation", "created.payload.json")) == 202
    assert await installations(app) == [(957387, 21031067, "Codertocat")]
    assert await repositories(app) == [(957387, "Codertocat/Hello-World")]
    async with app.runtime.sessionmaker() as session:
        assert await installation_for_repository(session, "codertocat/hello-world") == 957387


async def test_the_same_delivery_twice_changes_nothing_more(app: App) -> None:
    data = payload("installation", "created.payload.json")
    assert await app.deliver("installation", data, guid("same-id")) == 202
    assert await app.deliver("installation", data, guid("same-id")) == 200
    assert len(await installations(app)) == 1


def for_installation(name: str, installation_id: int) -> dict[str, object]:
    data = payload("installation", name)
    data["installation"]["id"] = installation_id
    return data


async def test_suspend_unsuspend_and_delete(app: App) -> None:
    await app.deliver("installation", payload("installation", "created.payload.json"))
    inst_id = 957387
    await app.deliver("installation", for_installation("suspend.payload.json", inst_id))
    assert await suspended(app, inst_id)
    await app.deliver("installation", for_installation("unsuspend.payload.json", inst_id))
    assert not await suspended(app, inst_id)
    await app.deliver("installation", for_installation("deleted.payload.json", inst_id))
    assert await installations(app) == []
    assert await repositories(app) == []


async def test_repositories_added_and_removed(app: App) -> None:
    await app.deliver("installation", payload("installation", "created.payload.json"))
    added = payload("installation_repositories", "added.payload.json")
    await app.deliver("installation_repositories", added)
    names = {r[1] for r in await repositories(app)}
    assert {r["full_name"] for r in added["repositories_added"]} <= names
    removed = payload("installation_repositories", "removed.payload.json")
    await app.deliver("installation_repositories", removed)
    names = {r[1] for r in await repositories(app)}
    assert not names & {r["full_name"] for r in removed["repositories_removed"]}


async def test_an_installation_event_without_an_installation_is_dead_not_retried(app: App) -> None:
    data = payload("installation", "created.payload.json")
    del data["installation"]
    await app.deliver("installation", data, guid("no-installation"))
    [(state, attempts, error)] = await fetch_all(
        app.runtime,
        "SELECT state, attempts, last_error FROM webhook_inbox WHERE delivery_id = :d",
        d=guid("no-installation"),
    )
    assert (state, attempts) == ("dead", 1) and "no installation id" in error


async def test_a_suspended_installation_is_not_acted_on_until_unsuspended(
    app: App, fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    m = await seed_market(app.runtime, fake_github)
    await app.deliver("installation", for_installation("suspend.payload.json", INSTALLATION_ID))
    with caplog.at_level(logging.INFO, logger="github_app.services.repo"):
        await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM), guid("while-suspended"))
    # Taken off the inbox (GitHub would not send it again), but nothing happened to the project.
    [(state,)] = await fetch_all(
        app.runtime, "SELECT state FROM webhook_inbox WHERE delivery_id = :d", d=guid("while-suspended")
    )
    assert state == "done"
    assert await fetch_all(app.runtime, 'SELECT id FROM "Story"') == []
    assert fake_github.requests_to("GET", f"/repos/{REPO}/contents") == []
    assert "installation is suspended; delivery not acted on" in caplog.text

    await app.deliver("installation", for_installation("unsuspend.payload.json", INSTALLATION_ID))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    assert await fetch_all(app.runtime, 'SELECT status FROM "Story"') == [("DRAFT",)]
