"""`bmad-app serve` and `bmad-app worker`: process assembly, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg
from aiohttp import web
from gidgethub import routing

from github_app.config import Settings
from github_app.db import migrate
from github_app.db.engine import is_sqlite
from github_app.inbox import store
from github_app.inbox.group_commit import GroupCommitWriter
from github_app.inbox.worker import Worker
from github_app.inbox.writers import AsyncpgInboxWriter, InboxWriter, SqlAlchemyInboxWriter
from github_app.metrics import forget_process
from github_app.outbox.sender import OutboxSender
from github_app.runtime import Runtime
from github_app.web import create_app

log = logging.getLogger(__name__)


def default_router() -> routing.Router:
    from handlers import router

    return router


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def open_writer(runtime: Runtime) -> InboxWriter:
    if runtime.is_sqlite:
        return SqlAlchemyInboxWriter(runtime.engine)
    return await AsyncpgInboxWriter.connect(runtime.settings.database_url, runtime.settings.database_app_schema)


def readiness(runtime: Runtime) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        return await migrate.schema_problem(runtime.engine, runtime.settings.database_app_schema)

    return check


def depth_sampler(runtime: Runtime) -> Callable[[], Awaitable[dict[str, int]]]:
    async def sample() -> dict[str, int]:
        async with runtime.engine.connect() as conn:
            return await store.depth(conn)

    return sample


async def run_server(
    settings: Settings,
    *,
    with_worker: bool = True,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
    started: Callable[[int], None] | None = None,
    router: routing.Router | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`): stop accepting, answer what is in flight, write what
    is queued, let the worker finish its deliveries, close."""
    router = router or default_router()
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    runtime = await Runtime.create(settings)
    writer = GroupCommitWriter(await open_writer(runtime))
    worker = make_worker(runtime, router) if with_worker else None
    if worker:
        writer.on_stored = worker.wake
    writer.start()
    app = create_app(writer, settings.webhook_secrets, readiness(runtime), depth_sampler(runtime))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    log.info(
        "listening",
        extra={
            "host": settings.host,
            "port": port,
            "worker": bool(worker),
            "database": "sqlite" if runtime.is_sqlite else "postgresql",
        },
    )
    if started:
        started(port)
    background = _background_tasks(runtime, worker, stop) if worker else []
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()  # stops accepting, waits for in-flight requests
        await writer.close()
        await asyncio.gather(*background)
        await writer.writer.close()
        await runtime.close()


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, router: routing.Router | None = None
) -> None:
    router = router or default_router()
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    runtime = await Runtime.create(settings)
    worker = make_worker(runtime, router)
    listener = await _listen_for_new_deliveries(runtime, worker)
    background = _background_tasks(runtime, worker, stop)
    try:
        await asyncio.gather(*background)
    finally:
        if listener is not None:
            await listener.close()
        await runtime.close()


def make_worker(runtime: Runtime, router: routing.Router) -> Worker:
    """The inbox worker and, beside it, the outbox sender it wakes whenever a delivery commits (a
    handler may have changed what GitHub should show)."""
    sender = OutboxSender(runtime, writes_per_second=runtime.settings.github_writes_per_second)
    runtime.outbox_sender = sender
    return Worker(runtime, router, on_processed=lambda _id, _state: sender.wake())


def _count(payload: str) -> int:
    return int(payload) if payload.isdigit() else 1


def _background_tasks(runtime: Runtime, worker: Worker, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The worker, the outbox sender, and periodic recovery when configured; all stop with `stop`."""
    tasks = [asyncio.create_task(worker.run(stop), name="inbox-worker")]
    if runtime.outbox_sender is not None:
        tasks.append(asyncio.create_task(runtime.outbox_sender.run(stop), name="outbox-sender"))
    if runtime.settings.recover_interval_minutes > 0:
        from github_app.inbox.recovery import periodic_recovery

        tasks.append(asyncio.create_task(periodic_recovery(runtime, stop), name="recovery"))
    tasks += _escrow_tasks(runtime, stop)
    return tasks


def _escrow_tasks(runtime: Runtime, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The release worker (always: a release on a chain that is not configured must say so on its PR)
    and the periodic funding check."""
    from github_app.escrow.backends import Chains
    from github_app.escrow.funding import periodic_sync
    from github_app.escrow.releases import Releaser

    settings = runtime.settings
    chains = Chains.from_settings(settings)
    releaser = Releaser(
        runtime,
        chains,
        lease_seconds=settings.worker_lease_seconds,
        poll_seconds=settings.worker_poll_seconds,
        concurrency=settings.escrow_release_concurrency,
    )
    tasks = [asyncio.create_task(releaser.run(stop), name="escrow-releaser")]
    from github_app.escrow.requested_refunds import RequestedRefunds

    refunds = RequestedRefunds(runtime, chains, poll_seconds=max(settings.worker_poll_seconds, 1.0))
    tasks.append(asyncio.create_task(refunds.run(stop), name="requested-refunds"))
    if settings.escrow_sync_seconds > 0 and chains.backends:
        tasks.append(asyncio.create_task(periodic_sync(runtime, chains, stop), name="escrow-funding"))

    async def close_chains() -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        await chains.close()

    return [*tasks, asyncio.create_task(close_chains(), name="escrow-chains-close")]


async def _listen_for_new_deliveries(runtime: Runtime, worker: Worker) -> asyncpg.Connection | None:
    """On PostgreSQL the ingress NOTIFYs with each batch; a separate worker wakes on it at once
    instead of waiting for its next poll."""
    if runtime.is_sqlite:
        return None
    from github_app.db.engine import asyncpg_dsn
    from github_app.inbox.writers import NOTIFY_CHANNEL

    try:
        conn = await asyncpg.connect(asyncpg_dsn(runtime.settings.database_url, runtime.settings.database_app_schema))
        await conn.add_listener(NOTIFY_CHANNEL, lambda _c, _p, _ch, payload: worker.wake(_count(payload)))
    except Exception as exc:
        log.warning("cannot LISTEN for new deliveries; polling only", extra={"error": repr(exc)})
        return None
    return conn


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run the HTTP server on uvloop (a third less CPU per request than asyncio's own loop), with the
    objects made at start-up moved out of the garbage collector's way."""
    import gc

    import uvloop

    async def frozen() -> None:
        gc.freeze()
        await main

    uvloop.run(frozen())


def _as_child() -> None:
    """Die with the parent: a `serve` killed outright must not leave HTTP or worker processes behind."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: rely on the parent's orderly shutdown
        pass


def _child_server(settings: Settings) -> None:
    from github_app.logs import setup_logging

    _as_child()
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    run_fast(run_server(settings, with_worker=False, reuse_port=True))


def _child_worker(settings: Settings) -> None:
    from github_app.logs import setup_logging

    _as_child()
    # Answering GitHub within its 10 s is urgent, processing is not: under a burst the ingress keeps the
    # CPU and the worker catches up afterwards.
    os.nice(settings.worker_nice)
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    asyncio.run(run_worker(settings))


def serve(settings: Settings, *, with_worker: bool = True) -> None:
    """On PostgreSQL the worker runs in a process of its own, at a lower priority, woken by the
    ingress's NOTIFY: handler work never delays an acknowledgement. Extra HTTP processes share the port
    through SO_REUSEPORT. On SQLite (one writer) everything stays in this process."""
    ctx = multiprocessing.get_context("spawn")
    sqlite = is_sqlite(settings.database_url)
    extra = 0 if sqlite else settings.web_processes - 1
    children = [ctx.Process(target=_child_server, args=(settings,), daemon=True) for _ in range(extra)]
    separate_worker = with_worker and not sqlite
    if separate_worker:
        children.append(ctx.Process(target=_child_worker, args=(settings,), daemon=True, name="worker"))
    for child in children:
        child.start()
    try:
        run_fast(run_server(settings, with_worker=with_worker and sqlite, reuse_port=extra > 0))
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each child shuts down gracefully on its own
        for child in children:
            child.join(timeout=15)
            forget_process(child.pid)
