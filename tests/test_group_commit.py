"""Group commit keeps every guarantee of one-commit-per-request: duplicates stored once, a failed batch
acknowledges none of its deliveries, and nothing is acknowledged before its transaction commits."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from github_app.db.types import utcnow
from github_app.inbox.group_commit import GroupCommitWriter, InboxUnavailable
from github_app.runtime import Runtime
from github_app.server import open_writer
from github_app.webhook import Delivery
from tests.conftest import fetch_all
from tests.waits import until


def delivery(delivery_id: str, payload: Any = b'{"action": "opened"}') -> Delivery:
    return Delivery(delivery_id, "pull_request", "opened", 1, "acme/widgets", payload, utcnow())


@asynccontextmanager
async def inbox_write_lock(runtime: Runtime) -> AsyncIterator[None]:
    """Another session holds the inbox's write lock, as a slow concurrent transaction would."""
    url = runtime.settings.database_url
    if runtime.is_sqlite:
        conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        import asyncpg

        from github_app.db.engine import asyncpg_dsn

        pg = await asyncpg.connect(asyncpg_dsn(url))
        tx = pg.transaction()
        await tx.start()
        await pg.execute("LOCK TABLE webhook_inbox IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
            await pg.close()


@pytest.fixture
async def make_writer(runtime: Runtime) -> AsyncIterator[Callable[..., GroupCommitWriter]]:
    made: list[GroupCommitWriter] = []

    async def build(**kw: Any) -> GroupCommitWriter:
        w = GroupCommitWriter(await open_writer(runtime), **kw)
        w.start()
        made.append(w)
        return w

    yield build  # type: ignore[misc]
    for w in made:
        await w.close()
        await w.writer.close()


async def stored_ids(runtime: Runtime) -> list[str]:
    return sorted(str(r[0]) for r in await fetch_all(runtime, "SELECT delivery_id FROM webhook_inbox"))


async def test_concurrent_duplicates_are_stored_once(runtime: Runtime, make_writer: Any) -> None:
    writer = await make_writer()
    ids = [f"id-{i % 20}" for i in range(60)]
    results = await asyncio.gather(*(writer.submit(delivery(i)) for i in ids))
    assert results.count(True) == 20  # exactly one 202 per delivery id
    assert results.count(False) == 40  # every other copy gets its 200
    assert await stored_ids(runtime) == sorted({*ids})


def count_writes(writer: GroupCommitWriter) -> list[int]:
    """Records each batch write as it starts (its size), so a test waits for that instead of sleeping."""
    started: list[int] = []
    insert_batch = writer.writer.insert_batch

    async def recorded(deliveries: list[Delivery]) -> set[str]:
        started.append(len(deliveries))
        return await insert_batch(deliveries)

    writer.writer.insert_batch = recorded  # type: ignore[method-assign]
    return started


async def test_nothing_is_acknowledged_before_its_commit(runtime: Runtime, make_writer: Any) -> None:
    writer = await make_writer()
    started = count_writes(writer)
    async with inbox_write_lock(runtime):
        pending = asyncio.ensure_future(writer.submit(delivery("waits-for-commit")))
        await until(lambda: started == [1])  # the write is under way, held by the lock
        assert not pending.done()  # the transaction cannot commit, so no answer yet
        assert await stored_ids(runtime) == []
    assert await asyncio.wait_for(pending, 30) is True
    assert await stored_ids(runtime) == ["waits-for-commit"]


async def test_a_failed_batch_acknowledges_none_of_its_deliveries(runtime: Runtime, make_writer: Any) -> None:
    writer = await make_writer(flushers=1)
    started = count_writes(writer)
    async with inbox_write_lock(runtime):
        first = asyncio.ensure_future(writer.submit(delivery("first-batch")))
        await until(lambda: started == [1])  # the flusher is now blocked writing the first batch
        # These gather into the next batch; one of them breaks the insert (payload NOT NULL).
        second = [asyncio.ensure_future(writer.submit(delivery(i))) for i in ("ok-1", "ok-2")]
        second.append(asyncio.ensure_future(writer.submit(delivery("broken", payload=None))))
        await until(lambda: writer._queue.qsize() == 3)
    assert await asyncio.wait_for(first, 30) is True
    outcomes = await asyncio.gather(*second, return_exceptions=True)
    assert all(isinstance(o, InboxUnavailable) for o in outcomes), outcomes
    assert started == [1, 3]  # one batch each
    assert await stored_ids(runtime) == ["first-batch"]


async def test_the_writer_recovers_after_a_failed_batch(runtime: Runtime, make_writer: Any) -> None:
    writer = await make_writer()
    with pytest.raises(InboxUnavailable):
        await writer.submit(delivery("broken", payload=None))
    assert await writer.submit(delivery("after")) is True
    assert await stored_ids(runtime) == ["after"]


async def test_inbox_down_answers_503_and_acknowledges_nothing(aiohttp_client: Any, runtime: Runtime) -> None:
    from sqlalchemy import text

    from github_app.server import readiness
    from github_app.web import WEBHOOK_PATH, create_app
    from tests.conftest import WEBHOOK_SECRET
    from tests.deliveries import encode, headers_for, payload

    writer = GroupCommitWriter(await open_writer(runtime))
    writer.start()
    client = await aiohttp_client(create_app(writer, (WEBHOOK_SECRET,), readiness(runtime)))
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE webhook_inbox RENAME TO webhook_inbox_away"))
    body = encode(payload("push"))
    resp = await client.post(WEBHOOK_PATH, data=body, headers=headers_for("push", body, WEBHOOK_SECRET))
    assert resp.status == 503
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE webhook_inbox_away RENAME TO webhook_inbox"))
    assert await stored_ids(runtime) == []
    await writer.close()
    await writer.writer.close()
