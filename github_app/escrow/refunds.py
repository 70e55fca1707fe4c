"""Refunds, by an operator (`bmad-app escrow refund ID`): a CANCELLED project, or a story that will not
be done. The same exactly-once machinery as releases: the signed transaction is committed before it
is broadcast, a re-run asks the chain about it, and the contract refuses to move an escrow's money
twice. The seed has no refund hash: it is kept in `escrow_chain_state`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.chains.errors import TxRejected
from github_app.chains.transactions import SignedTx
from github_app.db.app_tables import (
    ChainTxState,
    EscrowChainState,
    EscrowChainTx,
    EscrowReleaseRequest,
    ReleaseState,
    Wallet,
)
from github_app.db.enums import EscrowStatus
from github_app.db.models import Escrow
from github_app.db.queries import current_one
from github_app.db.types import utcnow
from github_app.domain.escrow import ONCHAIN_FUNDED, ONCHAIN_REFUNDED
from github_app.escrow.backends import Chains, keyed
from github_app.escrow.chain_txs import Fault, add_signed, live_tx, record_signed, settle_replaced, signed_of
from github_app.escrow.store import funder_of, lock_escrow_state
from github_app.escrow.subjects import audit_release, refresh_release_views

REFUNDED_ACTION = "escrow_refunded"


class RefundRefused(Exception):
    """What the operator is told, in one sentence (never a traceback)."""


@dataclass(frozen=True)
class RefundResult:
    escrow_id: str
    tx_hash: str
    tx_url: str


async def hold_for_refund(session: AsyncSession, escrow: Escrow, state: EscrowChainState) -> None:
    """A client's `/bmad refund` going ahead, with `state` locked (`lock_escrow_state`): the same check
    as the operator's refund (never an escrow released or being released), and the escrow held for the
    refund from now on, so the release worker refuses it (`bmad-app escrow refund --withdraw` lets it go)."""
    await _refuse_if_released(session, escrow, escrow.id)
    if state.refund_requested_at is None:
        state.refund_requested_at = utcnow()


async def refund(
    runtime: Any,
    chains: Chains,
    escrow_id: str,
    *,
    poll_seconds: float = 1.0,
    wait_seconds: float = 600.0,
    fault: Fault | None = None,
) -> RefundResult:
    """Pay a funded escrow back to its client. `fault(step, escrow_id)` is called after "signed",
    "broadcast" and "confirmed" (tests inject crashes there). Every failure is a RefundRefused whose
    message says, in one sentence, what happened and whether a refund is signed (the database says)."""
    try:
        return await _refund(
            runtime, chains, escrow_id, poll_seconds=poll_seconds, wait_seconds=wait_seconds, fault=fault
        )
    except RefundRefused:
        raise
    except Exception as exc:
        raise RefundRefused(await _explain(runtime, chains, escrow_id, exc)) from exc


async def _explain(runtime: Any, chains: Chains, escrow_id: str, exc: Exception) -> str:
    """A node or database failure, told as what it left behind. Only the exception's type is named: a
    node's message may carry its URL, and RPC URLs hold API keys."""
    from github_app.chains.addresses import CHAIN_NAMES

    async with runtime.sessionmaker() as session:
        escrow = await session.get(Escrow, escrow_id)
        recorded = await live_tx(session, escrow_id, "refund")
    chain = CHAIN_NAMES.get(escrow.blockchain, escrow.blockchain) if escrow is not None else "chain"
    trouble = f"the {chain} node or the database failed ({type(exc).__name__})"
    if recorded is None:
        return f"refund of escrow {escrow_id} not done: {trouble} before anything was signed; run again"
    return (
        f"refund of escrow {escrow_id} signed and recorded as {recorded.tx_hash} but not confirmed: {trouble}; "
        f"the worker sends it again and marks the escrow REFUNDED once it lands (`bmad-app escrow show {escrow_id}`)"
    )


async def _refund(
    runtime: Any,
    chains: Chains,
    escrow_id: str,
    *,
    poll_seconds: float,
    wait_seconds: float,
    fault: Fault | None,
) -> RefundResult:

    def step(name: str) -> None:
        if fault is not None:
            fault(name, escrow_id)

    async with runtime.sessionmaker() as session, session.begin():
        escrow = await session.get(Escrow, escrow_id)
        if escrow is None:
            raise RefundRefused(f"no escrow {escrow_id!r}")
        await chains.verify()
        backend = chains.get(escrow.blockchain)
        if backend is None:
            raise RefundRefused(chains.problem(escrow.blockchain) or "chain not configured")
        state = await lock_escrow_state(session, escrow_id, lock=not runtime.is_sqlite)
        if escrow.status == EscrowStatus.REFUNDED and state.refund_tx_hash:
            return RefundResult(escrow_id, state.refund_tx_hash, backend.tx_url(state.refund_tx_hash))
        await _refuse_if_released(session, escrow, escrow_id)
        currency = escrow.currency
        client_wallet = await session.get(Wallet, (escrow.client_id, escrow.blockchain))
        client_address = client_wallet.address if client_wallet is not None else None
        client, watch_from = await funder_of(session, escrow_id, escrow.client_id, escrow.blockchain)
        key = keyed(backend, client=client)
        recorded = await live_tx(session, escrow_id, "refund")
        signed = signed_of(recorded) if recorded is not None else None
    if key and client is None:
        raise RefundRefused(
            f"escrow {escrow_id} has no recorded funder and its client has no Polygon wallet: its on-chain id "
            "cannot be known; set the client's wallet with `bmad-app wallet set`, then run again"
        )
    if signed is None:
        # Nothing is recorded until the refund goes ahead: a refused refund leaves the escrow to its
        # release, as if it had never been asked for.
        onchain = await backend.read(escrow_id, currency, **key)
        if onchain.status == ONCHAIN_REFUNDED:
            found = await backend.find_transaction("refund", escrow_id, **key, **keyed(backend, from_block=watch_from))
            if found is None:
                raise RefundRefused("refunded on-chain, but its transaction was not found yet: run again")
            seen = await backend.outcome(SignedTx(tx_hash=found, raw=b"", signer=""))
            if not (seen.landed and seen.succeeded and seen.confirmations >= backend.confirmations):
                raise RefundRefused(f"refunded on-chain by {found}, not confirmed yet: run again")
            await _mark(runtime, backend, escrow_id, found)
            return RefundResult(escrow_id, found, backend.tx_url(found))
        if onchain.status != ONCHAIN_FUNDED:
            raise RefundRefused(
                f"escrow {escrow_id} is not funded on-chain (status {onchain.status}): nothing to refund"
            )
        if onchain.custodial:
            # Solana: the app holds the account, so the client's address comes from the wallet table
            # (the contract remembers it on Polygon). Everything the account holds goes back.
            if client_address is None:
                raise RefundRefused(
                    "the client has no Solana wallet: set one with "
                    "`bmad-app wallet set --user EMAIL --chain solana ADDRESS`, then run again"
                )
            prepared = await backend.build_refund(escrow_id, client_address, onchain.amount, currency)
        else:
            unsigned = await backend.unsigned("refund", escrow_id, **key)
            chain_nonce = await backend.pending_nonce()
        async with runtime.sessionmaker() as session, session.begin():
            # Held until this transaction commits: a release cannot reach RELEASING meanwhile, and
            # the request and its signed transaction are committed together.
            state = await lock_escrow_state(session, escrow_id, lock=not runtime.is_sqlite)
            escrow = await session.get(Escrow, escrow_id, populate_existing=True)
            assert escrow is not None
            await _refuse_if_released(session, escrow, escrow_id)
            if await live_tx(session, escrow_id, "refund") is not None:
                raise RefundRefused(f"another refund of escrow {escrow_id} was signed meanwhile: run again")
            # From now on the release worker refuses this escrow.
            if state.refund_requested_at is None:
                state.refund_requested_at = utcnow()
            if onchain.custodial:
                signed = prepared
                add_signed(session, backend, escrow_id, "refund", signed)
            else:
                signed = await record_signed(session, backend, escrow_id, "refund", unsigned, chain_nonce)
        step("signed")
    try:
        await backend.broadcast(signed)
    except TxRejected as exc:
        # Never on the chain: settled with the node's own words, and the request goes with it (a refused
        # refund leaves the escrow to its release).
        async with runtime.sessionmaker() as session, session.begin():
            state = await lock_escrow_state(session, escrow_id, lock=not runtime.is_sqlite)
            await session.execute(
                update(EscrowChainTx)
                .where(EscrowChainTx.tx_hash == signed.tx_hash)
                .values(state=ChainTxState.DROPPED, error=str(exc)[:2000])
            )
            if await live_tx(session, escrow_id, "refund") is None:
                state.refund_requested_at = None
        raise RefundRefused(f"the node refused the refund transaction {signed.tx_hash}: {exc}") from None
    step("broadcast")
    deadline = time.monotonic() + wait_seconds
    while True:
        outcome = await backend.outcome(signed)
        if outcome.landed and not outcome.succeeded:
            await _settle(runtime, signed.tx_hash, ChainTxState.REVERTED)
            raise RefundRefused(f"the refund transaction {signed.tx_hash} reverted on-chain")
        if outcome.never_lands:
            await _settle(runtime, signed.tx_hash, ChainTxState.DROPPED)
            raise RefundRefused(f"the refund transaction {signed.tx_hash} can never land: run again")
        if outcome.landed and outcome.confirmations >= backend.confirmations:
            break
        if time.monotonic() > deadline:
            raise RefundRefused(f"the refund {signed.tx_hash} is not confirmed yet: run again to keep waiting")
        await asyncio.sleep(poll_seconds)
    step("confirmed")
    await _mark(runtime, backend, escrow_id, signed.tx_hash)
    return RefundResult(escrow_id, signed.tx_hash, backend.tx_url(signed.tx_hash))


async def _refuse_if_released(session: Any, escrow: Escrow, escrow_id: str) -> None:
    if escrow.status == EscrowStatus.RELEASED:
        raise RefundRefused(f"escrow {escrow_id} is already RELEASED to the expert")
    releasing = (
        await session.execute(
            select(EscrowReleaseRequest.id).where(
                EscrowReleaseRequest.escrow_id == escrow_id,
                EscrowReleaseRequest.state.in_((ReleaseState.RELEASING, ReleaseState.RELEASED)),
            )
        )
    ).scalar()
    if releasing is not None:
        raise RefundRefused(f"escrow {escrow_id} is being released to the expert: wait for its outcome")


async def withdraw_refund(runtime: Any, escrow_id: str) -> str:
    """Withdraw an operator's refund request none of whose transactions can still move the money
    (never signed, or every one dropped or reverted); the release may then go ahead. What was done,
    as a sentence."""
    async with runtime.sessionmaker() as session, session.begin():
        escrow = await session.get(Escrow, escrow_id)
        if escrow is None:
            raise RefundRefused(f"no escrow {escrow_id!r}")
        state = await lock_escrow_state(session, escrow_id, lock=not runtime.is_sqlite)
        if escrow.status == EscrowStatus.REFUNDED or state.refund_tx_hash:
            raise RefundRefused(f"escrow {escrow_id} is already REFUNDED: nothing to withdraw")
        if state.refund_requested_at is None:
            raise RefundRefused(f"no refund of escrow {escrow_id} is requested: nothing to withdraw")
        live = await live_tx(session, escrow_id, "refund")
        if live is not None:
            raise RefundRefused(
                f"the refund of escrow {escrow_id} is signed ({live.tx_hash}) and may still land: run "
                "`bmad-app escrow refund` again to see it through"
            )
        state.refund_requested_at = None
    return f"{escrow_id}: refund request withdrawn; its release may go ahead (`bmad-app escrow retry {escrow_id}`)"


async def _settle(runtime: Any, tx_hash: str, state: str) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(update(EscrowChainTx).where(EscrowChainTx.tx_hash == tx_hash).values(state=state))


async def _mark(runtime: Any, backend: Any, escrow_id: str, tx_hash: str) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        stmt = select(Escrow).where(Escrow.id == escrow_id)
        if not runtime.is_sqlite:
            stmt = stmt.with_for_update()
        escrow = await current_one(session, stmt)
        state = await session.get(EscrowChainState, escrow_id)
        if escrow.status == EscrowStatus.REFUNDED and state is not None and state.refund_tx_hash == tx_hash:
            return  # marked already (the command and the worker may both see it land)
        now = utcnow()
        escrow.status = EscrowStatus.REFUNDED
        if state is None:
            state = EscrowChainState(escrow_id=escrow_id, checked_at=now)
            session.add(state)
        state.refund_tx_hash = tx_hash
        state.refunded_at = now
        await session.execute(
            update(EscrowChainTx)
            .where(EscrowChainTx.tx_hash == tx_hash)
            .values(state=ChainTxState.CONFIRMED, confirmed_at=now)
        )
        await settle_replaced(session, tx_hash)
        requests = (
            (await session.execute(select(EscrowReleaseRequest).where(EscrowReleaseRequest.escrow_id == escrow_id)))
            .scalars()
            .all()
        )
        for request in requests:
            request.state = ReleaseState.CANCELLED
            request.tx_url = backend.tx_url(tx_hash)
            request.lease_owner = None
            request.lease_expires_at = None
            await audit_release(
                session,
                request,
                REFUNDED_ACTION,
                {"escrowId": escrow_id, "transactionHash": tx_hash, "explorerUrl": backend.tx_url(tx_hash)},
            )
            await session.flush()
            await refresh_release_views(session, request.story_id, request.opportunity_id)


async def mark_refunded(runtime: Any, backend: Any, escrow_id: str, tx_hash: str) -> None:
    """Mark an escrow REFUNDED by this confirmed transaction (the worker's resend does it too)."""
    await _mark(runtime, backend, escrow_id, tx_hash)
