"""GitHub's retry waits fit inside the worker's handler deadline: a wait that would pass it is not
started; the delivery fails with GitHub's own answer and is retried on the inbox's schedule."""

from __future__ import annotations

import dataclasses

from github_app.github.client import GitHubApp, RetryPolicy
from github_app.inbox.worker import Worker
from github_app.server import default_router
from tests.conftest import fetch_all
from tests.deliveries import guid
from tests.fake_github import FakeGitHub
from tests.github_fixtures import GITHUB_APP_ID, REPO, KeyPair
from tests.harness import App
from tests.workflow import PM, STORY_PATH, seed_market, story_file


async def inbox_row(app: App, delivery_id: str) -> tuple[object, ...]:
    [row] = await fetch_all(
        app.runtime,
        "SELECT state, attempts, last_error FROM webhook_inbox WHERE delivery_id = :d",
        d=delivery_id,
    )
    return row


async def test_a_rate_limit_wait_longer_than_the_handler_deadline_is_not_started(
    app: App, fake_github: FakeGitHub, github_app_keys: KeyPair
) -> None:
    rt = app.runtime
    # Production retry waits (a secondary limit without Retry-After: a minute and more), a 9 s handler
    # deadline, and failed deliveries retried a minute later.
    rt.settings = dataclasses.replace(rt.settings, worker_lease_seconds=10.0, worker_retry_base_seconds=60.0)
    rt.github = GitHubApp(
        GITHUB_APP_ID, github_app_keys.private_pem, fake_github.url, rt.http, retry_policy=RetryPolicy()
    )
    app.worker = Worker(rt, default_router())
    assert app.worker.handler_deadline == 9.0
    m = await seed_market(rt, fake_github)
    fake_github.rate_limit_next(1, retry_after=None, path=f"/repos/{REPO}/contents")

    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM), guid("limited"))

    state, attempts, error = await inbox_row(app, guid("limited"))
    assert (state, attempts) == ("pending", 1)
    assert "secondary rate limit" in str(error) and "did not finish" not in str(error)
    assert len(fake_github.requests_to("GET", f"/repos/{REPO}/contents")) == 1  # not asked again meanwhile

    # The next delivery for the installation keeps the silence GitHub asked for, and says why.
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM), guid("held"))
    state, attempts, error = await inbox_row(app, guid("held"))
    assert (state, attempts) == ("pending", 1)
    assert "rate limit holds requests" in str(error)
    assert len(fake_github.requests_to("GET", f"/repos/{REPO}/contents")) == 1
