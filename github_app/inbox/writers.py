"""Insert a batch of verified deliveries in one statement and one transaction.

PostgreSQL uses asyncpg directly: this is the hot path of the ingress, and one multi-row
`INSERT ... SELECT FROM unnest(...)` with a prepared statement costs a fraction of an ORM round trip.
SQLite goes through SQLAlchemy Core; its speed is secondary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from github_app.db.app_tables import WebhookDelivery
from github_app.db.engine import asyncpg_dsn
from github_app.webhook import Delivery

NOTIFY_CHANNEL = "webhook_inbox"

_PG_INSERT = f"""
WITH inserted AS (
    INSERT INTO webhook_inbox
        (delivery_id, event, action, installation_id, repository, payload, received_at, next_attempt_at)
    SELECT d, e, a, i, r, p, t, t
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::timestamp[])
        AS u(d, e, a, i, r, p, t)
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
)
SELECT delivery_id, pg_notify('{NOTIFY_CHANNEL}', '') FROM inserted
"""


class InboxWriter(Protocol):
    async def insert_batch(self, batch: Sequence[Delivery]) -> set[str]:
        """Store the batch atomically; return the ids that were new. Raise if nothing was stored."""

    async def close(self) -> None: ...


class AsyncpgInboxWriter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, database_url: str, size: int = 2) -> AsyncpgInboxWriter:
        pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=size)
        return cls(pool)

    async def insert_batch(self, batch: Sequence[Delivery]) -> set[str]:
        # One statement in autocommit mode: it is its own transaction, committed when fetch returns.
        rows = await self.pool.fetch(
            _PG_INSERT,
            [d.delivery_id for d in batch],
            [d.event for d in batch],
            [d.action for d in batch],
            [d.installation_id for d in batch],
            [d.repository for d in batch],
            [d.payload for d in batch],
            [d.received_at for d in batch],
        )
        return {r[0] for r in rows}

    async def close(self) -> None:
        await self.pool.close()


class SqlAlchemyInboxWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert_batch(self, batch: Sequence[Delivery]) -> set[str]:
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
