"""Many deliveries for one story at once, handled by two workers with their own database connections
(PostgreSQL: SQLite has one writer and runs one worker)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from gidgethub import routing, sansio
from prometheus_client import REGISTRY

from github_app.demo.fake_github import FakeGitHub
from github_app.handling import HandlerContext
from github_app.inbox.worker import Worker, is_lock_conflict
from github_app.runtime import Runtime
from github_app.server import default_router
from tests.harness import App
from tests.workflow import DEV, PM, seed_market, story_file

PRS = 24


def lock_conflicts() -> float:
    return REGISTRY.get_sample_value("webhook_lock_conflicts_total", {"event": "pull_request"}) or 0.0


async def test_many_prs_naming_one_story_at_once(app: App, fake_github: FakeGitHub, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("SQLite has one writer: one worker, nothing to contend")
    m = await seed_market(app.runtime, fake_github)
    path = "docs/stories/1.1.story.md"
    await app.deliver("push", m.push("main", {path: story_file("Draft", "Story", 1, 1)}, PM))
    await app.deliver("push", m.push("main", {path: story_file("Approved", "Story", 1, 1)}, PM))
    await m.accept_bid(await m.scalar('SELECT id FROM "Story"'), DEV)
    for n in range(1, PRS + 1):
        opened = m.pr("opened", n, title="Story 1.1: work", branch=f"story/1.1-{n}")
        await app.deliver("pull_request", opened, process=False)

    settings = dataclasses.replace(app.runtime.settings, worker_concurrency=6)
    other = await Runtime.create(settings)
    other.github = app.runtime.github
    try:
        first = Worker(app.runtime, default_router(), name="worker-1", concurrency=6)
        second = Worker(other, default_router(), name="worker-2", concurrency=6)
        before = lock_conflicts()
        await asyncio.gather(first.run_until_idle(timeout=60), second.run_until_idle(timeout=60))
    finally:
        await other.close()

    rows = await m.rows("SELECT state, attempts, last_error FROM webhook_inbox WHERE event = 'pull_request'")
    assert len(rows) == PRS
    # Every delivery done at its first attempt: no deadlock turned into a failure and a back-off.
    assert {(state, attempts, error) for state, attempts, error in rows} == {("done", 1, None)}
    # Locks taken in one order (the story, then the PR link): the database never had to break a cycle.
    assert lock_conflicts() - before == 0
    # The first ready PR delivers the story; every PR is linked to it and shown on GitHub's side.
    assert await m.scalar('SELECT status FROM "Story"') == "READY_FOR_REVIEW"
    assert await m.scalar("SELECT count(*) FROM pull_request_link WHERE story_id IS NOT NULL") == PRS


def test_a_deadlock_is_recognised_through_its_wrappers() -> None:
    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    class Wrapped(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("deadlock detected")
            self.orig = orig

    assert is_lock_conflict(Wrapped(DeadlockDetected()))
    try:
        raise RuntimeError("handler") from Wrapped(DeadlockDetected())
    except RuntimeError as exc:
        assert is_lock_conflict(exc)
    assert not is_lock_conflict(ValueError("deadline"))


async def test_a_deadlock_is_run_again_at_once_and_counted(runtime: Runtime, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("SQLite has no deadlock detector")
    from sqlalchemy import text

    from tests.test_worker import effects, inbox, store_deliveries

    [delivery] = await store_deliveries(runtime, 1)
    runs: list[int] = []
    router = routing.Router()

    @router.register("push")
    async def handler(event: sansio.Event, ctx: HandlerContext) -> None:
        runs.append(1)
        await ctx.session.execute(
            text("INSERT INTO test_effects (delivery_id, worker) VALUES (:d, 'w')"), {"d": event.delivery_id}
        )
        if len(runs) == 1:  # PostgreSQL breaks a lock cycle by failing one of its transactions like this
            await ctx.session.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = 'deadlock_detected'; END $$")
            )

    before = REGISTRY.get_sample_value("webhook_lock_conflicts_total", {"event": "push"}) or 0.0
    await Worker(runtime, router).run_until_idle(timeout=10)

    # Run again in the same claim: no attempt spent, no back-off, no error left; its first writes rolled back.
    assert len(runs) == 2
    assert (await inbox(runtime))[delivery] == ("done", 1, None)
    assert await effects(runtime) == [(delivery, "w")]
    assert (REGISTRY.get_sample_value("webhook_lock_conflicts_total", {"event": "push"}) or 0.0) - before == 1
