"""Recorded transactions that no release request follows (refunds and rescues, on every chain): the
worker broadcasts each again until the chain settles it, and marks what landed.

A refund or rescue is signed with the arbiter's next nonce and recorded before it is sent. If the
command that signed it dies or loses the node before it is sent, its nonce would stay a gap that
holds up every later Polygon release: so the worker, not the operator's terminal, owns it from the
moment it is recorded. The same bytes are sent each time (same hash, harmless when already known);
on Polygon, one not mined within `POLYGON_REPLACE_SECONDS` of being recorded is replaced at its nonce
with a higher fee, as a stuck release is (every hash recorded first; whichever lands is the one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from github_app.chains.errors import TxRejected
from github_app.db.app_tables import ChainTxState, EscrowChainTx
from github_app.db.types import utcnow
from github_app.escrow.backends import Chains
from github_app.escrow.chain_txs import add_signed, settle_replaced, signed_of

log = logging.getLogger(__name__)

KINDS = ("refund", "rescue")


@dataclass
class ResendReport:
    sent: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    settled: dict[str, str] = field(default_factory=dict)  # hash -> reverted | dropped
    replaced: dict[str, str] = field(default_factory=dict)  # stuck hash -> its replacement's hash


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
        pending = [(r.chain, r.kind, r.escrow_id, signed_of(r), r.created_at) for r in rows]
    if not pending:
        return report
    await chains.verify()
    # Only the newest transaction at a nonce is ever replaced: the older ones already were.
    newest: dict[tuple[str, str, int | None], str] = {
        (chain, tx.signer, tx.nonce): tx.tx_hash for chain, _, _, tx, _ in pending if tx.nonce is not None
    }
    for chain, kind, escrow_id, signed, recorded_at in pending:
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
            replace_after = getattr(backend, "replace_after", None)
            if (
                replace_after is not None
                and newest.get((chain, signed.signer, signed.nonce)) == signed.tx_hash
                and (utcnow() - recorded_at).total_seconds() >= replace_after
            ):
                report.replaced[signed.tx_hash] = await replace(runtime, backend, kind, escrow_id, signed)
        except TxRejected as exc:
            # The node refused it before sending (its simulation failed): it was never on the chain, and
            # sending the same bytes again gets the same answer until it expires.
            await settle(runtime, signed.tx_hash, ChainTxState.DROPPED, error=str(exc))
            report.settled[signed.tx_hash] = ChainTxState.DROPPED
            log.error(
                "recorded transaction refused by the node",
                extra={"kind": kind, "escrow": escrow_id, "tx": signed.tx_hash, "error": str(exc)},
            )
        except Exception as exc:  # the node is down for now: the next pass tries again
            log.warning(
                "cannot resend a recorded transaction yet",
                extra={"kind": kind, "tx": signed.tx_hash, "error": type(exc).__name__},
            )
    return report


async def replace(runtime: Any, backend: Any, kind: str, escrow_id: str | None, stuck: Any) -> str:
    """Sign the stuck transaction's replacement, commit it (with what it replaces), then send it."""
    newer = await backend.replacement(stuck)
    async with runtime.sessionmaker() as session, session.begin():
        add_signed(session, backend, escrow_id, kind, newer, replaces=stuck.tx_hash)
    log.warning(
        "recorded transaction not mined in time; replaced with a higher fee",
        extra={"kind": kind, "escrow": escrow_id, "tx": newer.tx_hash, "replaces": stuck.tx_hash},
    )
    try:
        await backend.broadcast(newer)
    except Exception as exc:  # e.g. "underpriced": the next pass sends it again, or pays more again
        log.warning("replacement refused", extra={"tx": newer.tx_hash, "error": type(exc).__name__})
    return str(newer.tx_hash)


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


async def settle(runtime: Any, tx_hash: str, state: str, *, error: str | None = None) -> None:
    values: dict[str, Any] = {"state": state}
    if error is not None:
        values["error"] = error[:2000]
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(EscrowChainTx)
            .where(EscrowChainTx.tx_hash == tx_hash, EscrowChainTx.state == ChainTxState.SIGNED)
            .values(**values)
        )
