"""Inbox rows after they are stored: claiming with a lease, completing, failing, and operator views.

Time comes from the application's clock (UTC, naive, as every timestamp in this database), so SQLite
and PostgreSQL behave alike. Leases are short (seconds) and renewed by their holder's heartbeat
(`leases.py`); machines sharing a database keep their clocks in step (NTP) well within a lease.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Row, Select, Update, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from github_app.db.app_tables import InboxState, WebhookDelivery
from github_app.db.inbox_states import DEPTH_SQL, depth_counts
from github_app.db.types import utcnow
from github_app.leases import claim_statement, extend_leases

T = WebhookDelivery
MAX_BACKOFF_SECONDS = 3600.0
ERROR_MAX_CHARS = 4000


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    event: str
    action: str | None
    repository: str | None
    payload: bytes
    attempts: int
    received_at: datetime


def retry_delay(attempts: int, base_seconds: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), capped, then between half and all of it
    so that deliveries failing together do not retry together."""
    ceiling = min(MAX_BACKOFF_SECONDS, base_seconds * (2 ** max(0, attempts - 1)))
    return ceiling * (0.5 + (rng or random).random() / 2)


def _claim(skip_locked: bool) -> Update:
    now = bindparam("now", type_=T.next_attempt_at.type)
    return claim_statement(
        T,
        T.delivery_id,
        ((T.state == InboxState.PENDING) & (T.next_attempt_at <= now))
        | ((T.state == InboxState.PROCESSING) & (T.lease_expires_at < now)),
        (T.next_attempt_at,),
        bindparam("limit", type_=Integer),
        (T.delivery_id, T.event, T.action, T.repository, T.payload, T.attempts, T.received_at),
        skip_locked=skip_locked,
        state=InboxState.PROCESSING,
        attempts=T.attempts + 1,
    )


def _hold(lock: bool) -> Select[Any]:
    stmt = select(T.delivery_id).where(
        T.delivery_id == bindparam("id", type_=T.delivery_id.type),
        T.lease_owner == bindparam("owner", type_=T.lease_owner.type),
        T.state == InboxState.PROCESSING,
    )
    return stmt.with_for_update() if lock else stmt


# The worker's statements on every delivery, built once with parameters (see leases.claim_statement).
_CLAIM = {skip: _claim(skip) for skip in (True, False)}
_HOLD = {lock: _hold(lock) for lock in (True, False)}
_DONE = (
    update(T)
    .where(T.delivery_id == bindparam("id", type_=T.delivery_id.type))
    .values(
        state=InboxState.DONE,
        processed_at=bindparam("at", type_=T.processed_at.type),
        lease_owner=None,
        lease_expires_at=None,
        last_error=None,
    )
    .execution_options(synchronize_session=False)
)


async def claim(
    conn: AsyncConnection, owner: str, limit: int, lease_seconds: float, *, skip_locked: bool
) -> list[Claimed]:
    """Reserve up to `limit` due rows for `owner`: pending ones whose time has come, and processing
    ones whose lease ran out (their worker died). Each claim counts as an attempt, so a delivery that
    kills its worker every time still ends dead."""
    now = utcnow()
    params = {"now": now, "limit": limit, "owner": owner, "until": now + timedelta(seconds=lease_seconds)}
    rows = (await conn.execute(_CLAIM[skip_locked], params)).all()
    return [Claimed(*row) for row in rows]


async def hold(session: AsyncSession, delivery_id: str, owner: str, *, lock: bool) -> bool:
    """Inside the handler's transaction: is the row still ours? Locks it on PostgreSQL so that a worker
    that stole an expired lease cannot complete it too."""
    return (await session.execute(_HOLD[lock], {"id": delivery_id, "owner": owner})).first() is not None


async def renew(conn: AsyncConnection, owner: str, ids: Collection[str], lease_seconds: float) -> int:
    """The heartbeat: extend the leases `owner` still holds on `ids`. Rows locked by a handler's own
    transaction are skipped (nobody can claim a locked row; the next beat renews it if it is still
    ours), so a beat never waits behind a long unit of work."""
    return await extend_leases(conn, T, T.delivery_id, ids, owner, lease_seconds, T.state == InboxState.PROCESSING)


async def mark_done(session: AsyncSession, delivery_id: str) -> None:
    await session.execute(_DONE, {"id": delivery_id, "at": utcnow()})


async def mark_failed(
    conn: AsyncConnection,
    delivery_id: str,
    owner: str,
    error: str,
    *,
    attempts: int,
    max_attempts: int,
    retry_base_seconds: float,
) -> str:
    """Schedule a retry, or mark the row dead once its attempts are spent. Returns the new state."""
    dead = attempts >= max_attempts
    state = InboxState.DEAD if dead else InboxState.PENDING
    await conn.execute(
        update(T)
        .where(T.delivery_id == delivery_id, T.lease_owner == owner)
        .values(
            state=state,
            next_attempt_at=utcnow() + timedelta(seconds=0 if dead else retry_delay(attempts, retry_base_seconds)),
            lease_owner=None,
            lease_expires_at=None,
            last_error=error[-ERROR_MAX_CHARS:],
        )
    )
    return state


async def release(conn: AsyncConnection, owner: str) -> int:
    """Give back rows claimed but never started (graceful shutdown), without spending an attempt."""
    result = await conn.execute(
        update(T)
        .where(T.lease_owner == owner, T.state == InboxState.PROCESSING)
        .values(state=InboxState.PENDING, lease_owner=None, lease_expires_at=None, attempts=T.attempts - 1)
    )
    return result.rowcount or 0


async def retry(conn: AsyncConnection, delivery_id: str) -> bool:
    """Operator retry: run it again now, with a fresh budget of attempts."""
    result = await conn.execute(
        update(T)
        .where(T.delivery_id == delivery_id, T.state != InboxState.PROCESSING)
        .values(state=InboxState.PENDING, attempts=0, next_attempt_at=utcnow(), lease_owner=None, lease_expires_at=None)
    )
    return bool(result.rowcount)


async def depth(conn: AsyncConnection) -> dict[str, int]:
    return depth_counts((state, n) for state, n in await conn.execute(text(DEPTH_SQL)))


async def known_ids(conn: AsyncConnection, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        rows = await conn.execute(select(T.delivery_id).where(T.delivery_id.in_(wanted[i : i + 500])))
        found.update(r[0] for r in rows)
    return found


async def list_rows(conn: AsyncConnection, state: str | None, limit: int) -> list[Row[Any]]:
    stmt = (
        select(T.delivery_id, T.event, T.action, T.repository, T.state, T.attempts, T.received_at, T.last_error)
        .order_by(T.received_at.desc())
        .limit(limit)
    )
    if state:
        stmt = stmt.where(T.state == state)
    result: Any = await conn.execute(stmt)
    return list(result.all())


async def get_row(conn: AsyncConnection, delivery_id: str) -> Row[Any] | None:
    stmt = select(T.__table__).where(T.delivery_id == delivery_id)
    return (await conn.execute(stmt)).first()
