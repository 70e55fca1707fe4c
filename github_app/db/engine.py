"""Engines and sessions: one engine and one sessionmaker per process."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from github_app.db.app_schema import search_path
from github_app.db.urls import asyncpg_dsn as asyncpg_dsn
from github_app.db.urls import is_sqlite as is_sqlite


def async_url(url: str) -> str:
    """Accept the plain URLs people write and pick the async drivers we ship."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql" and u.get_driver_name() != "asyncpg":
        u = u.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite" and u.get_driver_name() != "aiosqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    return u.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the ingress write while a worker reads; busy_timeout turns lock contention into waiting.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# Besides the deliveries and releases in flight, a worker process holds connections for the lease
# heartbeats, the outbox sender, the refunds, the funding check and readiness probes.
POOL_HEADROOM = 6


def pool_size(settings: Any) -> int:
    """Connections kept open: one per delivery and per release in flight, and the headroom. A pool
    smaller than that opens and closes a connection for the overflow on every checkout (a TCP connect,
    authentication, and each statement prepared again on the new connection)."""
    return int(settings.worker_concurrency) + int(settings.escrow_release_concurrency) + POOL_HEADROOM


def settings_engine(settings: Any) -> AsyncEngine:
    """The engine a process of the app opens from its Settings."""
    return make_engine(settings.database_url, settings.database_app_schema, pool_size=pool_size(settings))


def make_engine(url: str, app_schema: str | None = None, **kwargs: Any) -> AsyncEngine:
    """`app_schema` defaults to DATABASE_APP_SCHEMA (see db/app_schema.py); SQLite ignores it."""
    url = async_url(url)
    if is_sqlite(url):
        kwargs.pop("pool_size", None)  # one writer: SQLAlchemy's default pool for the file
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = dict(kwargs.pop("connect_args", {}))
    server_settings = dict(connect_args.get("server_settings", {}))
    server_settings["search_path"] = search_path(app_schema)
    connect_args["server_settings"] = server_settings
    kwargs["connect_args"] = connect_args
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # No pre-ping: it is a round trip per checkout on the worker's hot path. A connection broken by a
    # database restart fails one operation, is discarded, and that delivery is retried.
    kwargs.setdefault("pool_recycle", 1800)
    # The connection returned last is handed out next: a few warm connections, whose prepared statements
    # are reused, serve most of the work instead of every statement being prepared on every connection
    # in turn.
    kwargs.setdefault("pool_use_lifo", True)
    return create_async_engine(url, **kwargs)


class UnitOfWorkSession(Session):
    """A session that keeps every row it loaded until it closes. SQLAlchemy's identity map holds rows
    weakly: a row a step read and let go (a story's state, read for the decision and again for the
    view) was read again by the next `session.get`. A unit of work is short, so holding its rows costs
    little and saves those round trips. A read after a row lock still uses `queries.current`."""


@event.listens_for(UnitOfWorkSession, "loaded_as_persistent")
def _hold_loaded(session: Session, instance: object) -> None:
    session.info.setdefault("loaded", []).append(instance)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=UnitOfWorkSession)
