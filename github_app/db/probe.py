"""A plain asyncpg connection for an HTTP-only process's probes (/readyz, /metrics' inbox depth): such a
process loads no SQLAlchemy, and the inbox writer's connections stay on the webhook's hot path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


class ProbeConnection:
    """One connection, opened on first use and lent to one probe at a time. A probe that fails closes it
    (it may be broken, or left mid-statement) and the next one opens a fresh one: a database that comes
    back is seen again."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                yield self._conn
            except BaseException:
                conn, self._conn = self._conn, None
                conn.terminate()
                raise

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
