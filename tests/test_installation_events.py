"""installation and installation_repositories keep GitHubInstallation and the repository map current."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import update

from github_app.db.queries import installation_for_repository
from github_app.demo.fake_github import FakeGitHub
from tests.conftest import fetch_all
from tests.deliveries import guid, payload
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


def added_to(installation_id: int, repos: list[tuple[int, str]]) -> dict[str, object]:
    data = payload("installation_repositories", "added.payload.json")
    data["installation"]["id"] = installation_id
    data["repositories_added"] = [
        {"id": rid, "node_id": f"R_{rid}", "name": name.split("/")[1], "full_name": name, "private": True}
        for rid, name in repos
    ]
    return data


async def test_a_repository_moved_to_another_installation_follows_the_newest_report(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """The app removed and installed again while the `deleted` delivery was missed (or the repository's
    organisation transferred it): the new installation reports the same repository, and wins."""
    await app.deliver("installation", payload("installation", "created.payload.json"))
    [(old, name)] = await repositories(app)
    [(repo_id,)] = await fetch_all(app.runtime, "SELECT repository_id FROM installation_repository")
    reinstalled = payload("installation", "created.payload.json")
    reinstalled["installation"]["id"] = 4242
    with caplog.at_level(logging.INFO, logger="github_app.services.installations"):
        await app.deliver("installation", reinstalled, guid("reinstalled"))
    assert await repositories(app) == [(4242, name)]
    assert "repository moved to another installation" in caplog.text
    [moved] = [r for r in caplog.records if r.getMessage() == "repository moved to another installation"]
    assert (moved.previous_installation, moved.installation, moved.repository_id) == (old, 4242, repo_id)
    [(state,)] = await fetch_all(
        app.runtime, "SELECT state FROM webhook_inbox WHERE delivery_id = :d", d=guid("reinstalled")
    )
    assert state == "done"
    # The old installation's late `deleted` delivery leaves the new mapping alone.
    await app.deliver("installation", for_installation("deleted.payload.json", old))
    assert await repositories(app) == [(4242, name)]


async def test_a_name_that_passed_to_another_repository_is_mapped_to_the_new_one(app: App) -> None:
    """acme/widgets was transferred away (or deleted) and a new acme/widgets created; the new one is
    added to another installation: the name follows the newest report instead of failing the delivery
    on the unique name, eight times, into the dead letters."""
    await app.deliver("installation_repositories", added_to(1, [(100, "acme/widgets")]))
    await app.deliver("installation_repositories", added_to(2, [(200, "Acme/Widgets")]), guid("recreated"))
    assert await fetch_all(
        app.runtime, "SELECT repository_id, installation_id, full_name FROM installation_repository"
    ) == [(200, 2, "Acme/Widgets")]
    [(state, attempts)] = await fetch_all(
        app.runtime, "SELECT state, attempts FROM webhook_inbox WHERE delivery_id = :d", d=guid("recreated")
    )
    assert (state, attempts) == ("done", 1)
    async with app.runtime.sessionmaker() as session:
        assert await installation_for_repository(session, "acme/widgets") == 2


async def test_an_older_report_processed_late_does_not_take_a_repository_back(app: App) -> None:
    """Deliveries are processed out of order (a retry): the installation GitHub reported last keeps it."""
    await app.deliver("installation_repositories", added_to(1, [(100, "acme/widgets")]), guid("older"), process=False)
    await app.deliver("installation_repositories", added_to(2, [(100, "acme/widgets")]), guid("newer"), process=False)
    async with app.runtime.engine.begin() as conn:  # the older one waits for its retry
        from sqlalchemy import text

        await conn.execute(
            text("UPDATE webhook_inbox SET next_attempt_at = '2999-01-01 00:00:00' WHERE delivery_id = :d"),
            {"d": guid("older")},
        )
    await app.process()
    async with app.runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE webhook_inbox SET next_attempt_at = received_at WHERE delivery_id = :d"), {"d": guid("older")}
        )
    await app.process()
    assert await fetch_all(app.runtime, "SELECT repository_id, installation_id FROM installation_repository") == [
        (100, 2)
    ]


async def test_a_push_without_an_installation_uses_the_repositorys_installation(
    app: App, fake_github: FakeGitHub
) -> None:
    """A repository webhook pointed at the app sends the same push without `installation`: the
    installation GitHub reported for the repository serves it."""
    m = await seed_market(app.runtime, fake_github)
    await app.deliver("installation_repositories", added_to(INSTALLATION_ID, [(4711, REPO)]))
    data = m.push("main", {STORY_PATH: story_file("Draft")}, PM)
    del data["installation"]
    await app.deliver("push", data, guid("no-installation-push"))
    [(state,)] = await fetch_all(
        app.runtime, "SELECT state FROM webhook_inbox WHERE delivery_id = :d", d=guid("no-installation-push")
    )
    assert state == "done"
    assert await fetch_all(app.runtime, 'SELECT status FROM "Story"') == [("DRAFT",)]


async def test_a_push_without_an_installation_for_an_unknown_repository_is_dead_with_the_reason(
    app: App, fake_github: FakeGitHub
) -> None:
    m = await seed_market(app.runtime, fake_github)
    async with app.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("DELETE FROM installation_repository"))
    data = m.push("main", {STORY_PATH: story_file("Draft")}, PM)
    del data["installation"]
    await app.deliver("push", data, guid("orphan"))
    [(state, error)] = await fetch_all(
        app.runtime, "SELECT state, last_error FROM webhook_inbox WHERE delivery_id = :d", d=guid("orphan")
    )
    assert state == "dead" and "no installation serves the repository" in error
    assert await fetch_all(app.runtime, 'SELECT id FROM "Story"') == []


async def test_the_first_push_to_an_empty_repository_without_a_default_branch(
    app: App, fake_github: FakeGitHub
) -> None:
    """An empty repository has no default branch until its first push; that push's payload may name none.
    The branch GitHub creates first is `main`, and the push is read as one to the default branch."""
    m = await seed_market(app.runtime, fake_github)
    data = m.push("main", {STORY_PATH: story_file("Draft")}, PM)
    data["repository"].pop("default_branch", None)
    data["repository"].pop("master_branch", None)
    data["before"] = "0" * 40
    data["created"] = True
    await app.deliver("push", data, guid("first-push"))
    [(state,)] = await fetch_all(
        app.runtime, "SELECT state FROM webhook_inbox WHERE delivery_id = :d", d=guid("first-push")
    )
    assert state == "done"
    assert await fetch_all(app.runtime, 'SELECT status FROM "Story"') == [("DRAFT",)]


def renamed(data: dict[str, Any], former: str, full_name: str, action: str) -> dict[str, Any]:
    """`data`'s repository as GitHub sends it after a rename (or a transfer to another owner)."""
    owner, name = full_name.split("/")
    repository = {**data["repository"], "name": name, "full_name": full_name}
    repository["owner"] = {**repository["owner"], "login": owner}
    old_owner, old_name = former.split("/")
    changes = (
        {"repository": {"name": {"from": old_name}}}
        if action == "renamed"
        else {"owner": {"from": {"organization": {"login": old_owner, "id": 7}}}}
    )
    return {
        "action": action,
        "changes": changes,
        "repository": repository,
        "sender": {"login": "octo-admin", "id": 9001, "type": "User"},
        "installation": {"id": INSTALLATION_ID},
    }


@pytest.mark.parametrize("action", ["renamed", "transferred"])
async def test_a_renamed_or_transferred_repository_keeps_its_project(
    app: App, fake_github: FakeGitHub, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    m = await seed_market(app.runtime, fake_github)
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    new_name = "acme/gadgets" if action == "renamed" else "newco/" + REPO.split("/")[1]
    pushed = m.push("main", {STORY_PATH.replace("1.3", "1.4"): story_file("Draft", number=4)}, PM)
    with caplog.at_level(logging.WARNING):
        assert await app.deliver("repository", renamed(pushed, REPO, new_name, action)) == 202
    assert await fetch_all(app.runtime, 'SELECT "repoName" FROM "Project"') == [(new_name,)]
    assert any(getattr(r, "audit", None) == "project_repository_renamed" for r in caplog.records)
    # A delivery under the new name is acted on: the story file pushed there is the project's story.
    fake_github.add_repo(new_name)
    fake_github.put_file(
        new_name, pushed["after"], STORY_PATH.replace("1.3", "1.4"), story_file("Draft", number=4).encode()
    )
    moved = renamed(pushed, REPO, new_name, action)
    await app.deliver("push", {**pushed, "repository": moved["repository"]})
    assert sorted(n for (n,) in await fetch_all(app.runtime, 'SELECT "storyNumber" FROM "Story"')) == [3, 4]
    # The old name no longer names the project: the same rename delivered again changes nothing.
    assert await app.deliver("repository", renamed(pushed, REPO, new_name, action)) == 202
    assert await fetch_all(app.runtime, 'SELECT "repoName" FROM "Project"') == [(new_name,)]


async def test_a_rename_moves_the_repository_map_unless_a_newer_report_came_first(
    app: App, fake_github: FakeGitHub
) -> None:
    from datetime import timedelta

    from github_app.db.app_tables import InstallationRepository
    from github_app.db.types import utcnow

    m = await seed_market(app.runtime, fake_github)
    pushed = m.push("main", {STORY_PATH: story_file("Approved")}, PM)
    repository_id = pushed["repository"]["id"]
    async with app.runtime.sessionmaker() as s, s.begin():
        s.add(
            InstallationRepository(
                repository_id=repository_id,
                installation_id=INSTALLATION_ID,
                full_name=REPO,
                full_name_key=REPO.lower(),
                added_at=utcnow() - timedelta(hours=1),
            )
        )
    await app.deliver("repository", renamed(pushed, REPO, "acme/gadgets", "renamed"))
    assert await repositories(app) == [(INSTALLATION_ID, "acme/gadgets")]
    # A report GitHub made after this rename was already applied (a late retry of an older delivery):
    async with app.runtime.engine.begin() as conn:
        await conn.execute(update(InstallationRepository.__table__).values(added_at=utcnow() + timedelta(hours=1)))
    await app.deliver("repository", renamed(pushed, "acme/gadgets", "acme/older-name", "renamed"))
    assert await repositories(app) == [(INSTALLATION_ID, "acme/gadgets")]
