"""Funding detection: a PENDING escrow becomes FUNDED only when the chain holds exactly what its row
says (amount, token, expert wallet, fee). A mismatch is reported (log, metric, `escrow show`) and
never accepted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from github_app.chains.addresses import CHAIN_NAMES, POLYGON
from github_app.db.app_tables import EscrowChainState, EscrowReleaseRequest, ReleaseState, Wallet
from github_app.db.enums import EscrowStatus
from github_app.db.models import Escrow
from github_app.db.queries import current_one
from github_app.db.types import utcnow
from github_app.domain.escrow import (
    ONCHAIN_FUNDED,
    ONCHAIN_NONE,
    ExpectedFunding,
    funding_mismatches,
    parse_amount,
)
from github_app.escrow.backends import Chains, keyed
from github_app.logs import SecretScrubber
from github_app.metrics import ESCROW_FUNDING

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    funded: list[str] = field(default_factory=list)
    not_funded: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    not_configured: dict[str, str] = field(default_factory=dict)


async def periodic_sync(runtime: Any, chains: Chains, stop: Any) -> None:
    """Every ESCROW_SYNC_SECONDS until `stop`: pending escrows checked on-chain."""
    import asyncio

    while not stop.is_set():
        try:
            report = await sync_funding(runtime, chains)
            if report.funded:
                log.info("escrows funded", extra={"count": len(report.funded)})
        except Exception as exc:  # the database or a node may be down for a while; keep trying
            log.error("escrow funding check failed", extra={"error": repr(exc)})
        try:
            await asyncio.wait_for(stop.wait(), timeout=runtime.settings.escrow_sync_seconds)
        except TimeoutError:
            pass


async def sync_funding(runtime: Any, chains: Chains) -> SyncReport:
    report = SyncReport()
    async with runtime.sessionmaker() as session:
        rows = (await session.execute(select(Escrow).where(Escrow.status == EscrowStatus.PENDING))).scalars().all()
        pending = [
            (e.id, e.blockchain, e.amount, e.currency, e.platform_fee, e.contract_address, e.expert_id, e.client_id)
            for e in rows
        ]
        wallets = {(w.user_id, w.chain): w.address for w in (await session.execute(select(Wallet))).scalars().all()}
    await chains.verify()
    for escrow_id, chain, amount_text, currency, fee_bps, contract_address, expert_id, client_id in pending:
        backend = chains.get(chain)
        if backend is None:
            report.not_configured[escrow_id] = chains.problem(chain) or f"{chain} is not configured"
            continue
        try:
            problem = await _check(
                runtime,
                backend,
                escrow_id,
                amount_text,
                currency,
                fee_bps,
                contract_address,
                wallets.get((expert_id, chain)),
                wallets.get((client_id, chain)),
            )
        except Exception as exc:  # one unreachable read does not stop the others
            ESCROW_FUNDING.labels(chain, "error").inc()
            log.warning("cannot read escrow on-chain", extra={"escrow": escrow_id, "error": repr(exc)})
            # A node's error may quote its URL, API key included.
            redact = SecretScrubber(runtime.settings.secret_values()).scrub
            report.problems[escrow_id] = redact(f"cannot read on-chain: {exc!r}")[:300]
            continue
        if problem == "":
            report.funded.append(escrow_id)
        elif problem is None:
            report.not_funded.append(escrow_id)
        else:
            report.problems[escrow_id] = problem
    return report


async def _check(
    runtime: Any,
    backend: Any,
    escrow_id: str,
    amount_text: str,
    currency: str,
    fee_bps: int,
    contract_address: str,
    expert_wallet: str | None,
    client_wallet: str | None = None,
) -> str | None:
    """'' when marked FUNDED now, None when not funded yet, else the problem.

    Polygon keys an escrow by its funder: only the client's own funding (from their wallet) is this
    escrow, and it is read at the configured confirmations, not at the chain head."""
    chain_name = CHAIN_NAMES.get(backend.chain, backend.chain)
    problems: list[str] = []
    amount = parse_amount(amount_text)
    token = backend.token_for(currency)
    if amount is None:
        problems.append(f"amount {amount_text!r} is not a whole number of base units")
    if token is None:
        problems.append(f"currency {currency!r} has no token configured on {chain_name}")
    expected_address = backend.address_of(escrow_id, currency)
    # Hex (Polygon) is case-insensitive; base58 (Solana) is not: a case-folded match is another key.
    same = (
        contract_address.lower() == expected_address.lower()
        if backend.chain == POLYGON
        else contract_address.strip() == expected_address
    )
    if not same:
        problems.append(f"contractAddress {contract_address} is not the escrow address {expected_address}")
    funder = keyed(backend, client=client_wallet, confirmed=True)
    if funder and client_wallet is None:
        problems.append(
            f"the client has no {chain_name} wallet: the escrow is the one funded from it; set it with "
            f"`bmad-app wallet set --user EMAIL --chain {backend.chain} ADDRESS`"
        )
        text = "; ".join(problems)
        await _record(runtime, escrow_id, text)
        ESCROW_FUNDING.labels(backend.chain, "mismatch").inc()
        return text
    if not problems and hasattr(backend, "ensure_account"):
        # Solana: the app creates the escrow's account; the client then transfers into it.
        await backend.ensure_account(escrow_id, currency)
    onchain = await backend.read(escrow_id, currency, **funder)
    if onchain.status == ONCHAIN_NONE and not problems:
        await _record(runtime, escrow_id, None)
        ESCROW_FUNDING.labels(backend.chain, "not_funded").inc()
        return None
    if onchain.status != ONCHAIN_FUNDED and onchain.status != ONCHAIN_NONE:
        problems.append(f"on-chain status is {onchain.status} (released or refunded) while the row is PENDING")
    if onchain.status == ONCHAIN_FUNDED and amount is not None and token is not None:
        problems += funding_mismatches(ExpectedFunding(amount, token, expert_wallet, fee_bps), onchain)
    if problems:
        text = "; ".join(problems)
        await _record(runtime, escrow_id, text)
        ESCROW_FUNDING.labels(backend.chain, "mismatch").inc()
        log.error("escrow funding does not match its row", extra={"escrow": escrow_id, "problem": text})
        return text
    try:
        funding_tx = await backend.find_transaction(
            "fund", escrow_id, **keyed(backend, client=client_wallet, from_block=onchain.block)
        )
    except Exception as exc:  # some providers refuse log queries over a long range: the hash is optional
        log.warning("funding transaction not found", extra={"escrow": escrow_id, "error": repr(exc)})
        funding_tx = None
    async with runtime.sessionmaker() as session, session.begin():
        stmt = select(Escrow).where(Escrow.id == escrow_id)
        if not runtime.is_sqlite:
            stmt = stmt.with_for_update()
        escrow = await current_one(session, stmt)
        if escrow.status != EscrowStatus.PENDING:
            return ""
        now = utcnow()
        escrow.status = EscrowStatus.FUNDED
        escrow.transaction_hash = funding_tx
        escrow.funded_at = now
        state = await _record_in(session, escrow_id, None)
        if funder:
            state.funder = client_wallet
            state.watch_from_block = onchain.block
        # A DONE story waiting for this funding is due now, not at its next poll.
        await session.execute(
            update(EscrowReleaseRequest)
            .where(
                EscrowReleaseRequest.state == ReleaseState.PENDING,
                EscrowReleaseRequest.escrow_id.is_(None),
                EscrowReleaseRequest.opportunity_id == escrow.opportunity_id,
            )
            .values(next_attempt_at=now)
        )
    ESCROW_FUNDING.labels(backend.chain, "funded").inc()
    log.info("escrow funded", extra={"escrow": escrow_id, "tx": funding_tx})
    return ""


async def _record(runtime: Any, escrow_id: str, problem: str | None) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await _record_in(session, escrow_id, problem)


async def _record_in(session: Any, escrow_id: str, problem: str | None) -> EscrowChainState:
    state = await session.get(EscrowChainState, escrow_id)
    if state is None:
        state = EscrowChainState(escrow_id=escrow_id, problem=problem, checked_at=utcnow())
        session.add(state)
    else:
        state.problem = problem
        state.checked_at = utcnow()
    return state
