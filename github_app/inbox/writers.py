"""Insert a batch of verified deliveries in one statement and one transaction.

PostgreSQL uses asyncpg directly: this is the hot path of the ingress, and one multi-row
`INSERT ... SELECT FROM unnest(...)` with a prepared statement costs a fraction of an ORM round trip.
SQLite goes through SQLAlchemy Core; its speed is secondary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import asyncpg

from github_app.db.urls import asyncpg_dsn
from github_app.webhook import Delivery

if TYPE_CHECKING:  # the SQLite writer's: an HTTP process on PostgreSQL loads no SQLAlchemy
    from sqlalchemy.ext.asyncio import AsyncEngine

NOTIFY_CHANNEL = "webhook_inbox"

# Workers LISTEN on this channel; the payload is how many deliveries were stored since the last one.
# A NOTIFY is sent at most every NOTIFY_INTERVAL: every notifying commit takes a database-wide lock and
# wakes each listener, which under a burst of thousands of deliveries a second cost more than the
# workers gained from hearing about each batch.
NOTIFY_INTERVAL = 0.05
_INSERT = """
    INSERT INTO webhook_inbox
        (delivery_id, event, action, installation_id, repository, payload, received_at, next_attempt_at)
    SELECT d, e, a, i, r, p, t, t
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::timestamp[])
        AS u(d, e, a, i, r, p, t)
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
"""
_PG_INSERT = _INSERT
# pg_notify with one payload in one transaction is delivered once, however many rows call it.
_PG_INSERT_NOTIFY = f"""
WITH inserted AS ({_INSERT})
SELECT delivery_id, pg_notify('{NOTIFY_CHANNEL}', $8::text) FROM inserted
"""


class InboxWriter(Protocol):
    async def insert_batch(self, batch: Sequence[Delivery]) -> set[str]:
        """Store the batch atomically; return the ids that were new. Raise if nothing was stored."""

    async def close(self) -> None: ...


class AsyncpgInboxWriter:
    """One dedicated connection per group-commit flusher. A pool would add a reset round trip to
    every batch; a connection that fails is closed and replaced on the next batch."""

    def __init__(self, dsn: str, size: int = 2) -> None:
        self.dsn = dsn
        self._idle: asyncio.Queue[asyncpg.Connection | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # connected on first use
        self._open: set[asyncpg.Connection] = set()
        self._last_notify = 0.0
        self._unannounced = 0
        self._trailing: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, database_url: str, app_schema: str | None = None, size: int = 2) -> AsyncpgInboxWriter:
        writer = cls(asyncpg_dsn(database_url, app_schema), size)
        # Fail at start, not on the first delivery, when the database is unreachable.
        conn = await writer._checkout()
        writer._idle.put_nowait(conn)
        return writer

    async def _checkout(self) -> asyncpg.Connection:
        conn = await self._idle.get()
        if conn is None or conn.is_closed():
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
            except BaseException:
                self._idle.put_nowait(None)
                raise
            self._open.add(conn)
        return conn

    async def insert_batch(self, batch: Sequence[Delivery]) -> set[str]:
        conn = await self._checkout()
        columns = (
            [d.delivery_id for d in batch],
            [d.event for d in batch],
            [d.action for d in batch],
            [d.installation_id for d in batch],
            [d.repository for d in batch],
            [d.payload for d in batch],
            [d.received_at for d in batch],
        )
        now = time.monotonic()
        announce = now - self._last_notify >= NOTIFY_INTERVAL
        try:
            # One statement in autocommit mode: it is its own transaction, committed when fetch returns.
            if announce:
                self._last_notify = now
                rows = await conn.fetch(_PG_INSERT_NOTIFY, *columns, str(self._unannounced + len(batch)))
                self._unannounced = 0
            else:
                rows = await conn.fetch(_PG_INSERT, *columns)
                self._unannounced += len(rows)
                if self._unannounced and (self._trailing is None or self._trailing.done()):
                    self._trailing = asyncio.create_task(self._announce_later())
        except asyncpg.PostgresError:
            self._idle.put_nowait(conn)  # the statement failed; the connection is fine
            raise
        except BaseException:
            self._open.discard(conn)
            conn.terminate()
            self._idle.put_nowait(None)
            raise
        self._idle.put_nowait(conn)
        return {r[0] for r in rows}

    async def _announce_later(self) -> None:
        """The last batches of a burst are announced too, one interval later."""
        await asyncio.sleep(NOTIFY_INTERVAL)
        if not self._unannounced or time.monotonic() - self._last_notify < NOTIFY_INTERVAL:
            return
        count, self._unannounced = self._unannounced, 0
        self._last_notify = time.monotonic()
        conn = await self._checkout()
        try:
            await conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1::text)", str(count))
        except Exception:  # the worker's poll picks the rows up anyway
            self._open.discard(conn)
            conn.terminate()
            conn = None
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        if self._trailing is not None:
            self._trailing.cancel()
        for conn in list(self._open):
            await conn.close()
        self._open.clear()


class SqlAlchemyInboxWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert_batch(self, batch: Sequence[Delivery]) -> set[str]:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        from github_app.db.app_tables import WebhookDelivery

        stmt = (
            sqlite_insert(WebhookDelivery)
            .values(
                [
                    {
                        "delivery_id": d.delivery_id,
                        "event": d.event,
                        "action": d.action,
                        "installation_id": d.installation_id,
                        "repository": d.repository,
                        "payload": d.payload,
                        "received_at": d.received_at,
                        "next_attempt_at": d.received_at,
                    }
                    for d in batch
                ]
            )
            .on_conflict_do_nothing(index_elements=["delivery_id"])
            .returning(WebhookDelivery.delivery_id)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
            return {row[0] for row in result}

    async def close(self) -> None:
        return None
