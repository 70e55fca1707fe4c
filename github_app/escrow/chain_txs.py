"""The app's record of the transactions it signs: each one is committed, with its nonce, before it is
broadcast, so that a crash at any point leaves something to reconcile with the chain and nothing to sign
twice. Releases, refunds, rescues and the resender all keep their transactions here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.chains.transactions import SignedTx
from github_app.db.app_tables import ChainTxState, EscrowChainTx, EvmSignerNonce
from github_app.db.types import utcnow

# A test's fault injection: called with (step, id) at each step of a release or refund,
# it may raise to simulate a crash there.
Fault = Callable[[str, str], None]


async def live_tx(session: AsyncSession, escrow_id: str, kind: str) -> EscrowChainTx | None:
    """The recorded transaction whose fate is not settled yet (or that paid), newest first."""
    stmt = (
        select(EscrowChainTx)
        .where(
            EscrowChainTx.escrow_id == escrow_id,
            EscrowChainTx.kind == kind,
            EscrowChainTx.state.in_((ChainTxState.SIGNED, ChainTxState.CONFIRMED)),
        )
        .order_by(EscrowChainTx.created_at.desc())
    )
    return (await session.execute(stmt)).scalars().first()


async def record_signed(
    session: AsyncSession, backend: Any, escrow_id: str | None, kind: str, unsigned: dict[str, Any], chain_nonce: int
) -> SignedTx:
    """Sign with the signer's next nonce and add the transaction to the caller's transaction: it is
    committed, with the nonce, before anyone broadcasts it."""
    nonce = await allocate_nonce(session, backend.chain_id, backend.signer, chain_nonce)
    signed: SignedTx = backend.sign(unsigned, nonce)
    add_signed(session, backend, escrow_id, kind, signed)
    return signed


async def settle_replaced(session: AsyncSession, tx_hash: str) -> None:
    """The other transactions recorded at the nonce of the one that was mined can never be: DROPPED."""
    T = EscrowChainTx
    landed = select(T.signer, T.nonce, T.chain).where(T.tx_hash == tx_hash).subquery()
    # One statement: a transaction without a nonce (Solana) matches nothing, NULL = NULL being unknown.
    await session.execute(
        update(T)
        .where(
            T.signer == landed.c.signer,
            T.nonce == landed.c.nonce,
            T.chain == landed.c.chain,
            T.tx_hash != tx_hash,
            T.state == ChainTxState.SIGNED,
        )
        .values(state=ChainTxState.DROPPED)
        .execution_options(synchronize_session=False)
    )


def add_signed(
    session: AsyncSession,
    backend: Any,
    escrow_id: str | None,
    kind: str,
    signed: SignedTx,
    *,
    replaces: str | None = None,
) -> None:
    session.add(
        EscrowChainTx(
            escrow_id=escrow_id,
            kind=kind,
            chain=backend.chain,
            tx_hash=signed.tx_hash,
            raw_tx=signed.raw,
            signer=signed.signer,
            nonce=signed.nonce,
            recent_blockhash=signed.recent_blockhash,
            last_valid_block_height=signed.last_valid_block_height,
            state=ChainTxState.SIGNED,
            replaces=replaces,
        )
    )


def signed_of(row: EscrowChainTx) -> SignedTx:
    return SignedTx(
        tx_hash=row.tx_hash,
        raw=bytes(row.raw_tx),
        signer=row.signer,
        nonce=row.nonce,
        recent_blockhash=row.recent_blockhash,
        last_valid_block_height=row.last_valid_block_height,
    )


async def allocate_nonce(session: AsyncSession, chain_id: int, signer: str, chain_next: int) -> int:
    """The signer's next nonce, under its row's lock until the caller's transaction ends (so the
    transaction signed with it is recorded before anyone else allocates). Never below what the chain
    has seen: a key also used elsewhere does not make us reuse a nonce."""
    T = EvmSignerNonce
    current = case((T.next_nonce > chain_next, T.next_nonce), else_=chain_next)
    take = (
        update(T)
        .where(T.chain_id == chain_id, T.signer == signer)
        .values(next_nonce=current + 1, updated_at=utcnow())
        .returning(T.next_nonce)
    )
    row = (await session.execute(take)).scalar()
    if row is None:  # the signer's first transaction: its row is made (two at once make one), then taken
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        await session.execute(
            insert(T)
            .values(chain_id=chain_id, signer=signer, next_nonce=chain_next, updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=[T.chain_id, T.signer])
        )
        row = (await session.execute(take)).scalar_one()
    return int(row) - 1
