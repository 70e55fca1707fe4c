"""Processing: each stored delivery is handled exactly once, through failures, crashes and restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gidgethub import routing, sansio
from sqlalchemy import text

from github_app.config import Settings
from github_app.db.types import utcnow
from github_app.handling import HandlerContext, PermanentFailure
from github_app.inbox import store
from github_app.inbox.worker import BURST_DELIVERIES_PER_SECOND, Worker
from github_app.inbox.writers import AsyncpgInboxWriter, SqlAlchemyInboxWriter
from github_app.runtime import Runtime
from github_app.webhook import Delivery
from tests.conftest import fetch_all, make_settings
from tests.waits import until

ROOT = Path(__file__).resolve().parent.parent


async def store_deliveries(runtime: Runtime, n: int, event: str = "push", prefix: str = "d") -> list[str]:
    ids = [f"{prefix}-{i:04d}" for i in range(n)]
    writer = (
        SqlAlchemyInboxWriter(runtime.engine)
        if runtime.is_sqlite
        else await AsyncpgInboxWriter.connect(runtime.settings.database_url)
    )
    try:
        await writer.insert_batch(
            [Delivery(i, event, None, 1, "acme/widgets", b'{"ref": "refs/heads/main"}', utcnow()) for i in ids]
        )
    finally:
        await writer.close()
    async with runtime.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS test_effects (delivery_id TEXT, worker TEXT)"))
    return ids


async def effects(runtime: Runtime) -> list[tuple[Any, ...]]:
    return await fetch_all(runtime, "SELECT delivery_id, worker FROM test_effects ORDER BY delivery_id")


async def inbox(runtime: Runtime) -> dict[str, tuple[Any, ...]]:
    rows = await fetch_all(runtime, "SELECT delivery_id, state, attempts, last_error FROM webhook_inbox")
    return {str(r[0]): r[1:] for r in rows}


def recording_router(
    name: str = "w", fail_times: int = 0, exc: Callable[[], Exception] | None = None, delay: float = 0.0
) -> routing.Router:
    router = routing.Router()
    calls: dict[str, int] = {}

    @router.register("push")
    async def handle(event: sansio.Event, ctx: HandlerContext) -> None:
        # The effect is written first: a failure after it must roll it back.
        await ctx.session.execute(
            text("INSERT INTO test_effects (delivery_id, worker) VALUES (:d, :w)"), {"d": event.delivery_id, "w": name}
        )
        if delay:
            await asyncio.sleep(delay)
        key = event.delivery_id or ""
        calls[key] = calls.get(key, 0) + 1
        if calls[key] <= fail_times:
            raise (exc or (lambda: RuntimeError("GitHub said 502")))()

    return router


async def test_a_delivery_is_handled_and_marked_done_with_its_effects(runtime: Runtime) -> None:
    [d] = await store_deliveries(runtime, 1)
    await Worker(runtime, recording_router()).run_until_idle()
    assert await effects(runtime) == [(d, "w")]
    assert (await inbox(runtime))[d][:2] == ("done", 1)


async def test_failures_are_retried_and_their_writes_rolled_back(runtime: Runtime) -> None:
    [d] = await store_deliveries(runtime, 1)
    await Worker(runtime, recording_router(fail_times=2)).run_until_idle()
    assert await effects(runtime) == [(d, "w")]  # two failed attempts left nothing behind
    assert (await inbox(runtime))[d][:2] == ("done", 3)


async def test_a_delivery_that_keeps_failing_ends_dead_with_its_error(db_url: str) -> None:
    runtime = await Runtime.create(make_settings(db_url, worker_max_attempts=3))
    try:
        [d] = await store_deliveries(runtime, 1)
        await Worker(runtime, recording_router(fail_times=99)).run_until_idle()
        state, attempts, error = (await inbox(runtime))[d]
        assert (state, attempts) == ("dead", 3)
        assert "GitHub said 502" in error
        assert await effects(runtime) == []
        # The operator fixes the cause and retries it: a fresh budget of attempts.
        async with runtime.engine.begin() as conn:
            assert await store.retry(conn, d)
        await Worker(runtime, recording_router()).run_until_idle()
        assert (await inbox(runtime))[d][:2] == ("done", 1)
    finally:
        await runtime.close()


async def test_retries_back_off(db_url: str) -> None:
    runtime = await Runtime.create(make_settings(db_url, worker_retry_base_seconds=60.0))
    try:
        [d] = await store_deliveries(runtime, 1)
        before = utcnow()
        await Worker(runtime, recording_router(fail_times=1)).run_until_idle()
        assert (await inbox(runtime))[d][:2] == ("pending", 1)  # not retried at once
        [(next_at,)] = await fetch_all(runtime, "SELECT next_attempt_at FROM webhook_inbox")
        if isinstance(next_at, str):
            from datetime import datetime

            next_at = datetime.fromisoformat(next_at)
        delay = (next_at - before).total_seconds()
        assert 29 <= delay <= 61  # first retry: base, with jitter between half and all of it
    finally:
        await runtime.close()


def test_backoff_doubles_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    delays = [store.retry_delay(a, 5.0, rng) for a in range(1, 15)]
    assert 2.5 <= delays[0] <= 5 and 20 <= delays[3] <= 40
    assert max(delays) <= store.MAX_BACKOFF_SECONDS


async def test_a_permanent_failure_is_dead_at_once(runtime: Runtime) -> None:
    [d] = await store_deliveries(runtime, 1)
    await Worker(
        runtime, recording_router(fail_times=1, exc=lambda: PermanentFailure("no such story"))
    ).run_until_idle()
    state, attempts, error = (await inbox(runtime))[d]
    assert (state, attempts) == ("dead", 1) and "no such story" in error


async def expire_leases(runtime: Runtime) -> None:
    """The holder's lease runs out (its process died, or stalled past it)."""
    async with runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE webhook_inbox SET lease_expires_at = '2000-01-01 00:00:00'"))


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_complete(runtime: Runtime) -> None:
    [d] = await store_deliveries(runtime, 1)
    async with runtime.engine.begin() as conn:  # a worker claims it, then dies
        assert len(await store.claim(conn, "dead-worker", 1, 30, skip_locked=not runtime.is_sqlite)) == 1
    rescuer = Worker(runtime, recording_router("rescuer"))
    await rescuer.run_until_idle()
    assert await effects(runtime) == []  # the lease still holds
    await expire_leases(runtime)
    await rescuer.run_until_idle()
    assert await effects(runtime) == [(d, "rescuer")]
    assert (await inbox(runtime))[d][:2] == ("done", 2)
    async with runtime.sessionmaker() as session, session.begin():
        assert not await store.hold(session, d, "dead-worker", lock=not runtime.is_sqlite)


async def test_a_worker_that_lost_its_lease_writes_nothing(runtime: Runtime) -> None:
    """A worker stalled past its lease and taken over: when it gets to the delivery it finds the row
    no longer its own; its handler's effects are not committed and the row is not touched."""
    from github_app.metrics import DELIVERIES_PROCESSED

    [d] = await store_deliveries(runtime, 1)
    stalled = Worker(runtime, recording_router("stalled"), name="stalled")
    async with runtime.engine.begin() as conn:
        [row] = await store.claim(conn, "stalled", 1, 30, skip_locked=not runtime.is_sqlite)
    await expire_leases(runtime)
    await Worker(runtime, recording_router("rescuer")).run_until_idle()
    lost = DELIVERIES_PROCESSED.labels("push", "lost_lease")
    before = lost._value.get()
    await stalled._process(row)
    assert lost._value.get() == before + 1
    assert await effects(runtime) == [(d, "rescuer")]
    assert (await inbox(runtime))[d][:2] == ("done", 2)


async def test_a_live_slow_holder_keeps_its_lease_past_the_lease_length(db_url: str) -> None:
    """Leases are short so that a dead worker's deliveries are taken over in seconds; a live worker's
    heartbeat keeps them for as long as its handler runs, and no other worker claims them."""
    runtime = await Runtime.create(make_settings(db_url, worker_lease_seconds=0.5, worker_heartbeat_seconds=0.1))
    try:
        [d] = await store_deliveries(runtime, 1)
        release = asyncio.Event()
        router = routing.Router()

        @router.register("push")
        async def slow(event: sansio.Event, ctx: HandlerContext) -> None:
            await release.wait()  # (SQLite: nothing written yet, so the rival is not kept out by the write lock)
            await ctx.session.execute(
                text("INSERT INTO test_effects (delivery_id, worker) VALUES (:d, 'slow')"), {"d": event.delivery_id}
            )

        slow_worker = Worker(runtime, router, name="slow")
        task = asyncio.create_task(slow_worker.run_until_idle())
        # A second of renewals: twice the lease.
        await until(lambda: slow_worker.heartbeat.beats >= 10 or task.done(), what="ten heartbeats")
        assert not task.done()
        async with runtime.engine.begin() as conn:
            assert await store.claim(conn, "rival", 1, 0.5, skip_locked=not runtime.is_sqlite) == []
        release.set()
        await asyncio.wait_for(task, 30)
        assert await effects(runtime) == [(d, "slow")]
        assert (await inbox(runtime))[d][:2] == ("done", 1)
    finally:
        await runtime.close()


def _start_worker_process(db_url: str, marker: Path, sleep: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", db_url, str(marker), str(sleep)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _effects_of(runtime: Runtime) -> bool:
    return bool(await effects(runtime))


async def _all_effects(runtime: Runtime, count: int) -> bool:
    return len(await effects(runtime)) == count


async def _wait_for(path: Path) -> None:
    await until(path.exists, what=f"{path}")


async def test_kill_9_mid_delivery_loses_nothing(runtime: Runtime, tmp_path: Path) -> None:
    [d] = await store_deliveries(runtime, 1)
    marker = tmp_path / "started"
    proc = _start_worker_process(runtime.settings.database_url, marker, sleep=60)
    try:
        await _wait_for(marker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert (await inbox(runtime))[d][0] == "processing"
    # A survivor takes the delivery over as soon as the dead worker's short lease (1 s) runs out.
    survivor = Worker(runtime, recording_router("survivor"))
    stop = asyncio.Event()
    running = asyncio.create_task(survivor.run(stop))
    try:
        await until(lambda: _effects_of(runtime))
    finally:
        stop.set()
        await running
    assert await effects(runtime) == [(d, "survivor")]
    assert (await inbox(runtime))[d][:2] == ("done", 2)


async def test_sigterm_finishes_the_delivery_in_flight_then_exits(runtime: Runtime, tmp_path: Path) -> None:
    [d] = await store_deliveries(runtime, 1)
    marker = tmp_path / "started"
    proc = _start_worker_process(runtime.settings.database_url, marker, sleep=1.0)
    try:
        await _wait_for(marker)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out.decode()
    assert await effects(runtime) == [(d, "subprocess")]
    assert (await inbox(runtime))[d][:2] == ("done", 1)


async def test_graceful_stop_waits_for_in_flight_handlers(runtime: Runtime) -> None:
    ids = await store_deliveries(runtime, 3)
    worker = Worker(runtime, recording_router(delay=0.3))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await until(
        lambda: fetch_all(runtime, "SELECT 1 FROM webhook_inbox WHERE state = 'processing'"), what="a claimed delivery"
    )
    stop.set()
    await asyncio.wait_for(task, 10)
    states = await inbox(runtime)
    done = [i for i in ids if states[i][0] == "done"]
    assert done, "the delivery in flight was finished"
    assert all(states[i][0] in ("done", "pending") for i in ids)  # nothing left half-claimed


async def test_two_workers_share_postgresql_without_doing_anything_twice(db_url: str, is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("SQLite runs a single worker; sharing is a PostgreSQL feature")
    settings: Settings = make_settings(db_url, worker_concurrency=4)
    a, b = await Runtime.create(settings), await Runtime.create(settings)
    try:
        ids = await store_deliveries(a, 300)
        stop = asyncio.Event()
        workers = [Worker(a, recording_router("a", delay=0.002)), Worker(b, recording_router("b", delay=0.002))]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]

        async def drained() -> bool:
            return len(await fetch_all(a, "SELECT 1 FROM webhook_inbox WHERE state = 'done'")) == len(ids)

        await until(drained, seconds=60, what="every delivery done")
        stop.set()
        await asyncio.gather(*tasks)
        done = await effects(a)
        assert len(done) == len(ids) and {r[0] for r in done} == set(ids)  # each exactly once
        by_worker = {w: sum(1 for r in done if r[1] == w) for w in ("a", "b")}
        assert by_worker["a"] > 0 and by_worker["b"] > 0, by_worker
        assert all(v[:2] == ("done", 1) for v in (await inbox(a)).values())
    finally:
        await a.close()
        await b.close()


async def test_processing_latency_is_measured(runtime: Runtime) -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("webhook_processing_latency_seconds_count") or 0
    await store_deliveries(runtime, 2)
    await Worker(runtime, recording_router()).run_until_idle()
    assert REGISTRY.get_sample_value("webhook_processing_latency_seconds_count") == before + 2


async def test_a_burst_defers_processing_for_a_bounded_time(db_url: str) -> None:
    runtime = await Runtime.create(make_settings(db_url, worker_burst_defer_seconds=1.0))
    try:
        ids = await store_deliveries(runtime, 3)
        worker = Worker(runtime, recording_router())
        stop = asyncio.Event()

        async def flood() -> None:  # five thousand deliveries a second, without end
            while not stop.is_set():
                worker.wake(50)
                await asyncio.sleep(0.01)

        deferrals: list[bool] = []
        deferring = worker.deferring

        def counted() -> bool:
            deferrals.append(deferring())
            return deferrals[-1]

        worker.deferring = counted  # type: ignore[method-assign]
        flooding = asyncio.create_task(flood())
        await until(lambda: worker._arrived >= BURST_DELIVERIES_PER_SECOND, what="a burst")
        task = asyncio.create_task(worker.run(stop))
        await until(lambda: deferrals.count(True) >= 2, what="two rounds deferred")  # 0.25 s apart
        assert await effects(runtime) == []  # the ingress has the machine
        # The flood goes on, the deferral does not: after its second (of 1 s), everything is processed.
        await until(lambda: _all_effects(runtime, len(ids)), what="the deliveries processed during the flood")
        stop.set()
        await asyncio.gather(task, flooding)
        assert deferrals.index(False) >= 2  # rounds deferred before the first that claimed
    finally:
        await runtime.close()
