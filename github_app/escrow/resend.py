"""Recorded transactions that no release request follows (refunds and rescues, on every chain): the
worker broadcasts each again until the chain settles it, and marks what landed.

A refund or rescue is signed with the arbiter's next nonce and recorded before it is sent. If the
command that signed it dies or loses the node before it is sent, its nonce would stay a gap that
holds up every later Polygon release: so the worker, not the operator's terminal, owns it from the
moment it is recorded. The same bytes are sent each time (same hash, harmless when already known).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from github_app.db.app_tables import ChainTxState, EscrowChainTx
from github_app.db.types import utcnow
from github_app.escrow.backends import Chains
from github_app.escrow.chain_txs import settle_replaced, signed_of

log = logging.getLogger(__name__)

KINDS = ("refund", "rescue")


@dataclass
class ResendReport:
    sent: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    settled: dict[str, str] = field(default_factory=dict)  # hash -> reverted | dropped


async def resend_unsent(runtime: Any, chains: Chains) -> ResendReport:
    """One pass over every signed, unsettled refund and rescue, oldest nonce first."""
    report = ResendReport()
    async with runtime.sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    select(EscrowChainTx)
                    .where(EscrowChainTx.state == ChainTxState.SIGNED, EscrowChainTx.kind.in_(KINDS))
                    .order_by(EscrowChainTx.nonce, EscrowChainTx.created_at)
                )
            )
            .scalars()
            .all()
        )
        pending = [(r.chain, r.kind, r.escrow_id, signed_of(r)) for r in rows]
    if not pending:
        return report
    await chains.verify()
    for chain, kind, escrow_id, signed in pending:
        backend = chains.get(chain)
        if backend is None:
            continue
        try:
            outcome = await backend.outcome(signed)
            if outcome.landed and outcome.succeeded:
                if outcome.confirmations >= backend.confirmations:
                    await mark_confirmed(runtime, backend, kind, escrow_id, signed.tx_hash)
                    report.confirmed.append(signed.tx_hash)
                continue
            if outcome.landed or outcome.never_lands:
                state = ChainTxState.REVERTED if outcome.landed else ChainTxState.DROPPED
                await settle(runtime, signed.tx_hash, state)
                report.settled[signed.tx_hash] = state
                log.error(
                    "recorded transaction settled without effect",
                    extra={"kind": kind, "escrow": escrow_id, "tx": signed.tx_hash, "state": state},
                )
                continue
            await backend.broadcast(signed)
            report.sent.append(signed.tx_hash)
        except Exception as exc:  # the node is down for now: the next pass tries again
            log.warning(
                "cannot resend a recorded transaction yet",
                extra={"kind": kind, "tx": signed.tx_hash, "error": type(exc).__name__},
            )
    return report


async def mark_confirmed(runtime: Any, backend: Any, kind: str, escrow_id: str | None, tx_hash: str) -> None:
    if kind == "refund" and escrow_id is not None:
        from github_app.escrow.refunds import mark_refunded

        await mark_refunded(runtime, backend, escrow_id, tx_hash)
        return
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(EscrowChainTx)
            .where(EscrowChainTx.tx_hash == tx_hash)
            .values(state=ChainTxState.CONFIRMED, confirmed_at=utcnow())
        )
        await settle_replaced(session, tx_hash)


async def settle(runtime: Any, tx_hash: str, state: str) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(EscrowChainTx)
            .where(EscrowChainTx.tx_hash == tx_hash, EscrowChainTx.state == ChainTxState.SIGNED)
            .values(state=state)
        )
