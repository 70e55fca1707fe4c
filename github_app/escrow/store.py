"""The release queue: claiming due release requests under a lease, like the inbox and the outbox."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, Update, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from github_app.db.app_tables import EscrowChainState, EscrowReleaseRequest, ReleaseState, Wallet
from github_app.db.queries import current, current_one
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent
from github_app.leases import claim_statement, extend_leases

T = EscrowReleaseRequest


@dataclass(frozen=True)
class ClaimedRelease:
    id: str
    story_id: str | None  # None: a planning stage's release
    attempts: int


async def claim(
    conn: AsyncConnection, owner: str, limit: int, lease_seconds: float, *, skip_locked: bool
) -> list[ClaimedRelease]:
    """Due requests (pending or releasing, their time come, no live lease), reserved for `owner`."""
    now = utcnow()
    params = {"now": now, "limit": limit, "owner": owner, "until": now + timedelta(seconds=lease_seconds)}
    return [ClaimedRelease(*row) for row in (await conn.execute(_CLAIM[skip_locked], params)).all()]


def _claim(skip_locked: bool) -> Update:
    now = bindparam("now", type_=T.next_attempt_at.type)
    return claim_statement(
        T,
        T.id,
        T.state.in_(ReleaseState.DUE)
        & or_(T.next_attempt_at <= now, T.next_attempt_at.is_(None))
        & or_(T.lease_expires_at.is_(None), T.lease_expires_at < now),
        (T.next_attempt_at,),
        bindparam("limit", type_=Integer),
        (T.id, T.story_id, T.attempts),
        skip_locked=skip_locked,
        attempts=T.attempts + 1,
    )


_CLAIM = {skip: _claim(skip) for skip in (True, False)}


async def hold(session: AsyncSession, request_id: str, owner: str, *, lock: bool) -> EscrowReleaseRequest | None:
    """Inside a step's transaction: the request if this worker still holds its lease (compare-and-set:
    a worker whose lease expired and was taken over writes nothing)."""
    stmt = select(T).where(T.id == request_id, T.lease_owner == owner, T.lease_expires_at > utcnow())
    if lock:
        stmt = stmt.with_for_update()
    return await current(session, stmt)


async def renew(conn: AsyncConnection, owner: str, ids: Collection[str], lease_seconds: float) -> int:
    """The heartbeat: extend the leases `owner` still holds on `ids` (a release waiting for its
    confirmations keeps its request). Rows locked by one of the release's own short steps are skipped;
    nobody can claim them meanwhile."""
    return await extend_leases(conn, T, T.id, ids, owner, lease_seconds)


def put_back(request: EscrowReleaseRequest, at: datetime | None = None) -> None:
    request.lease_owner = None
    request.lease_expires_at = None
    request.next_attempt_at = at or utcnow()


async def lock_escrow_state(session: AsyncSession, escrow_id: str, *, lock: bool) -> EscrowChainState:
    """The app's own row for an escrow, locked (created first when missing). A release and a refund of
    one escrow each commit to go ahead only while holding it, so that at most one of them is ever signed:
    the release moves to RELEASING only if no refund was requested, a refund is requested only if no
    release is RELEASING. Never the shared Escrow row, which the marketplace's services write too."""
    stmt = select(EscrowChainState).where(EscrowChainState.escrow_id == escrow_id)
    if lock:
        stmt = stmt.with_for_update()
    state = await current(session, stmt)
    if state is None:  # never checked yet: made first (two at once make one row), then locked
        await insert_if_absent(
            session,
            EscrowChainState.__table__,  # type: ignore[arg-type]
            {"escrow_id": escrow_id, "checked_at": utcnow()},
            conflict=["escrow_id"],
        )
        return await current_one(session, stmt)
    return state


async def funder_of(session: AsyncSession, escrow_id: str, client_id: str, chain: str) -> tuple[str | None, int | None]:
    """(the address whose funding of this escrow was accepted, the block it was accepted at). Before
    acceptance, or for an escrow accepted before funders were recorded: the client's wallet, no block."""
    state = await session.get(EscrowChainState, escrow_id)
    if state is not None and state.funder:
        return state.funder, state.watch_from_block
    wallet = await session.get(Wallet, (client_id, chain))
    return (wallet.address if wallet is not None else None), None


async def wallets_of(
    session: AsyncSession, chain: str, expert_id: str | None, client_id: str | None
) -> tuple[Wallet | None, Wallet | None]:
    """The expert's and the client's wallets on `chain`, in one query."""
    ids = [i for i in (expert_id, client_id) if i]
    stmt = select(Wallet).where(Wallet.chain == chain, Wallet.user_id.in_(ids))
    found = {w.user_id: w for w in (await session.execute(stmt)).scalars()} if ids else {}
    return (found.get(expert_id) if expert_id else None, found.get(client_id) if client_id else None)
