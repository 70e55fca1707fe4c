"""`bmad-app serve` and `bmad-app worker`: process assembly, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from gidgethub import routing

from github_app.api.context import ApiContext, ApiLoader
from github_app.api.ratelimit import RateLimiter
from github_app.config import Settings
from github_app.db import migrate
from github_app.db.inbox_states import DEPTH_SQL, depth_counts
from github_app.db.probe import ProbeConnection
from github_app.db.urls import asyncpg_dsn, is_sqlite
from github_app.http_limits import GuardedRunner
from github_app.inbox.group_commit import GroupCommitWriter
from github_app.inbox.writers import AsyncpgInboxWriter, InboxWriter, SqlAlchemyInboxWriter
from github_app.metrics import forget_process
from github_app.web import DepthSampler, ReadinessCheck, create_app

if TYPE_CHECKING:
    # An HTTP-only process on PostgreSQL loads none of these: it stores deliveries, the worker acts on
    # them, and SQLAlchemy (which a Runtime's engine loads) costs about 19 MiB in each process.
    from github_app.escrow.backends import Chains
    from github_app.escrow.releases import Releaser
    from github_app.inbox.worker import Worker
    from github_app.runtime import Runtime

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
    from github_app.inbox import store

    async def sample() -> dict[str, int]:
        async with runtime.engine.connect() as conn:
            return await store.depth(conn)

    return sample


@dataclass
class Ingress:
    """What serving HTTP needs of the database, and how to let it go."""

    writer: InboxWriter
    readiness: ReadinessCheck
    depth: DepthSampler
    api: ApiContext | ApiLoader
    close: Callable[[], Awaitable[None]]


async def runtime_ingress(runtime: Runtime, worker: Worker | None) -> Ingress:
    """Through the process's Runtime: SQLite, and wherever a worker runs beside the server."""
    return Ingress(
        await open_writer(runtime),
        readiness(runtime),
        depth_sampler(runtime),
        api_context(runtime, worker),
        runtime.close,
    )


async def asyncpg_ingress(settings: Settings) -> Ingress:
    """An HTTP-only process on PostgreSQL: plain asyncpg for the inbox and the probes, and the API's engine
    made on the first API request. No SQLAlchemy until then."""
    writer = await AsyncpgInboxWriter.connect(settings.database_url, settings.database_app_schema)
    probe = ProbeConnection(asyncpg_dsn(settings.database_url, settings.database_app_schema))
    api = LazyApi(settings)

    async def ready() -> str | None:
        return await migrate.schema_problem_asyncpg(probe.connection, settings.database_app_schema)

    async def depth() -> dict[str, int]:
        async with probe.connection() as conn:
            return depth_counts((state, n) for state, n in await conn.fetch(DEPTH_SQL))

    async def close() -> None:
        await probe.close()
        await api.close()

    return Ingress(writer, ready, depth, api, close)


class LazyApi:
    """The API's context of an HTTP-only process, made when the first API request arrives."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context: ApiContext | None = None

    def __call__(self) -> ApiContext:
        from github_app.db.engine import make_sessionmaker, settings_engine

        engine = settings_engine(self.settings)
        limiter = RateLimiter(self.settings.api_requests_per_minute)
        self.context = ApiContext(engine, make_sessionmaker(engine), limiter)
        return self.context

    async def close(self) -> None:
        if self.context is not None:
            await self.context.engine.dispose()


async def run_server(
    settings: Settings,
    *,
    with_worker: bool = True,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
    started: Callable[[int], None] | None = None,
    router: routing.Router | None = None,
    chains: Chains | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`): stop accepting, answer what is in flight, write what
    is queued, let the worker finish its deliveries, close. `chains` replaces the configured chains
    (`bmad-app demo` runs the product on in-process ones)."""
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    sqlite = is_sqlite(settings.database_url)
    runtime: Runtime | None = None
    worker: Worker | None = None
    if with_worker or sqlite:
        from github_app.runtime import Runtime

        runtime = await Runtime.create(settings, with_github=with_worker)
        # The handlers (and, through the escrow commands, chain libraries) are imported only where a worker
        # runs: an HTTP-only process stays light.
        worker = make_worker(runtime, router or default_router()) if with_worker else None
        ingress = await runtime_ingress(runtime, worker)
    else:
        ingress = await asyncpg_ingress(settings)
    writer = GroupCommitWriter(ingress.writer)
    if worker:
        writer.on_stored = worker.wake
    writer.start()
    limits = settings.http_limits()
    app = create_app(writer, settings.webhook_secrets, ingress.readiness, ingress.depth, limits, api=ingress.api)
    runner = GuardedRunner(app, limits, access_log=None, handle_signals=False, shutdown_timeout=10)
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
            "database": "sqlite" if sqlite else "postgresql",
        },
    )
    if started:
        started(port)
    background = _background_tasks(runtime, worker, stop, chains) if runtime and worker else []
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()  # stops accepting, waits for in-flight requests
        await writer.close()
        await asyncio.gather(*background)
        await writer.writer.close()
        await ingress.close()


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, router: routing.Router | None = None
) -> None:
    from github_app.runtime import Runtime

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


def api_context(runtime: Runtime, worker: Worker | None) -> ApiContext:
    return ApiContext(
        runtime.engine,
        runtime.sessionmaker,
        RateLimiter(runtime.settings.api_requests_per_minute),
        on_retry=worker.wake if worker else None,
    )


def make_worker(runtime: Runtime, router: routing.Router) -> Worker:
    """The inbox worker and, beside it, the outbox sender it wakes when a delivery's commit changed
    what GitHub should show."""
    from github_app.db import wakes
    from github_app.inbox.worker import Worker
    from github_app.outbox.sender import OutboxSender

    sender = OutboxSender(runtime, writes_per_second=runtime.settings.github_writes_per_second)
    runtime.outbox_sender = sender

    def on_processed(_id: str, _state: str, asked: frozenset[str]) -> None:
        if wakes.OUTBOX in asked:
            sender.wake()

    return Worker(runtime, router, on_processed=on_processed)


def _count(payload: str) -> int:
    return int(payload) if payload.isdigit() else 1


def _background_tasks(
    runtime: Runtime, worker: Worker, stop: asyncio.Event, chains: Chains | None = None
) -> list[asyncio.Task[None]]:
    """The worker, the outbox sender, and periodic recovery when configured; all stop with `stop`."""
    tasks = [asyncio.create_task(worker.run(stop), name="inbox-worker")]
    if runtime.outbox_sender is not None:
        tasks.append(asyncio.create_task(runtime.outbox_sender.run(stop), name="outbox-sender"))
    if runtime.settings.recover_interval_minutes > 0:
        from github_app.inbox.recovery import periodic_recovery

        tasks.append(asyncio.create_task(periodic_recovery(runtime, stop), name="recovery"))
    tasks += _escrow_tasks(runtime, stop, worker, chains)
    return tasks


def wake_on_processed(worker: Worker, releaser: Releaser) -> None:
    """A delivery that made a story DONE committed its release request: the releaser starts on it at once
    instead of at its next idle poll."""
    from github_app.db import wakes

    processed = worker.on_processed

    def on_processed(delivery_id: str, state: str, asked: frozenset[str]) -> None:
        if processed is not None:
            processed(delivery_id, state, asked)
        if wakes.RELEASES in asked:
            releaser.wake()

    worker.on_processed = on_processed


def _escrow_tasks(
    runtime: Runtime, stop: asyncio.Event, worker: Worker, chains: Chains | None = None
) -> list[asyncio.Task[None]]:
    """The release worker (always: a release on a chain that is not configured must say so on its PR)
    and the periodic funding check."""
    from github_app.escrow.backends import Chains
    from github_app.escrow.funding import periodic_sync
    from github_app.escrow.releases import Releaser

    settings = runtime.settings
    chains = chains or Chains.from_settings(settings)
    releaser = Releaser(
        runtime,
        chains,
        lease_seconds=settings.worker_lease_seconds,
        heartbeat_seconds=settings.worker_heartbeat_seconds,
        poll_seconds=settings.worker_poll_seconds,
        concurrency=settings.escrow_release_concurrency,
    )
    wake_on_processed(worker, releaser)
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


def child_main() -> None:
    """A process `serve` started: its role and settings arrive on stdin (never in its environment or
    command line, where the secrets would show)."""
    from github_app.logs import setup_logging

    role, settings = pickle.loads(sys.stdin.buffer.read())
    _as_child()
    if role == "worker":
        # Answering GitHub within its 10 s is urgent, processing is not: under a burst the ingress keeps
        # the CPU and the worker catches up afterwards.
        os.nice(settings.worker_nice)
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    if role == "worker":
        run_fast(run_worker(settings))
    else:
        run_fast(run_server(settings, with_worker=False, reuse_port=True))


def _start_child(role: str, settings: Settings) -> subprocess.Popen[bytes]:
    """A fresh interpreter that imports only what its role needs (the HTTP process none of the
    handlers, the GitHub client or the chains), started directly: no multiprocessing helper process."""
    child = subprocess.Popen(
        [sys.executable, "-c", "from github_app.server import child_main; child_main()"],
        stdin=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(pickle.dumps((role, settings)))
    child.stdin.close()
    return child


def http_settings(settings: Settings) -> Settings:
    """What an HTTP-only process keeps: no chain key."""
    import dataclasses

    return dataclasses.replace(settings, polygon_arbiter_key=None, solana_authority_key=None)


def serve(settings: Settings, *, with_worker: bool = True) -> None:
    """On PostgreSQL the worker runs in a process of its own, at a lower priority, woken by the
    ingress's NOTIFY: handler work never delays an acknowledgement. Extra HTTP processes share the port
    through SO_REUSEPORT. On SQLite (one writer) everything stays in this process."""
    sqlite = is_sqlite(settings.database_url)
    extra = 0 if sqlite else settings.web_processes - 1
    children = []
    if with_worker and not sqlite:
        children.append(_start_child("worker", settings))
    if not (with_worker and sqlite):
        # The HTTP processes face the internet and sign nothing: no chain key in their settings or their
        # environment (key files are only ever read by the worker, see github_app.chains.keys).
        settings = http_settings(settings)
        os.environ.pop("POLYGON_ARBITER_KEY", None)
    children += [_start_child("server", settings) for _ in range(extra)]
    try:
        run_fast(run_server(settings, with_worker=with_worker and sqlite, reuse_port=extra > 0))
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()  # SIGTERM: each child shuts down gracefully on its own
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            forget_process(child.pid)
