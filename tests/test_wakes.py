"""The worker wakes the outbox sender and the releaser only for what a delivery committed, and finds
what nobody announced at its idle poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from github_app.db import wakes
from github_app.demo.fake_github import FakeGitHub
from github_app.inbox.worker import Worker
from github_app.runtime import Runtime
from tests.conftest import fetch_all, make_settings
from tests.harness import App
from tests.test_worker import effects, recording_router, store_deliveries
from tests.waits import until
from tests.workflow import DEV, GATE_PATH, PM, QA, STORY_PATH, Market, gate_file, seed_market, story_file


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def test_each_delivery_wakes_only_the_loops_its_commit_needs(app: App, market: Market) -> None:
    m = market
    asked: list[frozenset[str]] = []
    app.worker.on_processed = lambda _id, _state, wanted: asked.append(wanted)

    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    [(story_id,)] = await m.rows('SELECT id FROM "Story"')
    await m.accept_bid(story_id, DEV)
    assert asked == [frozenset(), frozenset()]  # no pull request yet: nothing for GitHub, nothing to pay

    await app.deliver("pull_request", m.pr("opened", 7, head_sha="b" * 40))
    assert asked[-1] == {wakes.OUTBOX}  # the PR's check run and comment

    await app.deliver("pull_request", m.pr("edited", 7, head_sha="b" * 40))
    assert asked[-1] == frozenset()  # what GitHub should show did not change: the sender sleeps on

    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, head_sha="b" * 40, sender=PM))
    assert await m.rows('SELECT status FROM "Story"') == [("DONE",)]
    assert asked[-1] == {wakes.OUTBOX, wakes.RELEASES}  # DONE: the release request, and the PR says so
    assert sum(wakes.RELEASES in a for a in asked) == 1


async def _rows_done(runtime: Runtime, n: int) -> bool:
    return len(await fetch_all(runtime, "SELECT 1 FROM webhook_inbox WHERE state = 'done'")) == n


async def test_deliveries_nobody_announced_are_claimed_at_the_idle_poll(db_url: str) -> None:
    """After a claim that emptied the inbox the worker claims again only when told of new deliveries;
    a delivery stored without a word (another process, a retry falling due) is found at its poll."""
    runtime = await Runtime.create(make_settings(db_url, worker_poll_seconds=0.2))
    worker = Worker(runtime, recording_router())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await store_deliveries(runtime, 3, prefix="announced")
        worker.wake(3)
        await until(lambda: _rows_done(runtime, 3))
        await store_deliveries(runtime, 2, prefix="unannounced")
        await until(lambda: _rows_done(runtime, 5))
        assert len(await effects(runtime)) == 5
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await runtime.close()
