"""`bmad-app wallet ...` and `bmad-app escrow ...`: what an operator does by hand."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import or_, select

from github_app.chains.addresses import InvalidAddress
from github_app.config import Settings
from github_app.db.app_tables import EscrowChainState, EscrowChainTx, EscrowReleaseRequest
from github_app.db.enums import EscrowStatus
from github_app.db.models import Escrow
from github_app.escrow.backends import Chains
from github_app.escrow.instructions import funding_instructions
from github_app.runtime import Runtime
from github_app.services.views import release_text


def _run(settings: Settings, body: Callable[[Runtime], Awaitable[int]]) -> int:
    async def main() -> int:
        runtime = await Runtime.create(settings)
        try:
            return await body(runtime)
        except Exception as exc:  # a node or the database failed: a sentence, never a traceback
            return _err(f"{type(exc).__name__}: {exc}")
        finally:
            await runtime.close()

    return asyncio.run(main())


_redact: Callable[[str], str] = str


def _out(text: str) -> None:
    """Command output: RPC URLs (they carry API keys) never shown."""
    print(_redact(text))


def _err(message: str) -> int:
    print(f"bmad-app: {_redact(message)}", file=sys.stderr)
    return 1


def _set_redaction(settings: Settings) -> None:
    global _redact
    from github_app.logs import SecretScrubber

    _redact = SecretScrubber(settings.secret_values()).scrub


def cmd_wallet(settings: Settings, args: argparse.Namespace) -> int:
    from github_app.escrow.wallets import NodeWalletChecker, WalletError, set_wallet

    _set_redaction(settings)

    async def body(runtime: Runtime) -> int:
        checker = NodeWalletChecker(settings)
        try:
            async with runtime.sessionmaker() as session, session.begin():
                user_id, address = await set_wallet(session, args.user, args.chain, args.address, checker)
        except (InvalidAddress, WalletError) as exc:
            return _err(str(exc))
        _out(f"{args.user} ({user_id}): {args.chain} wallet {address}")
        if checker.unchecked:
            print(
                f"bmad-app: not checked on-chain ({args.chain.upper()}_RPC_URL is not set): make sure it is a "
                "wallet, not a program, token account or contract",
                file=sys.stderr,
            )
        return 0

    return _run(settings, body)


def cmd_escrow(settings: Settings, args: argparse.Namespace) -> int:
    handler = {
        "deploy": _deploy,
        "list": _list,
        "show": _show,
        "sync": _sync,
        "retry": _retry,
        "refund": _refund,
        "withdraw-refund": _withdraw_refund,
        "rescue": _rescue,
    }[args.escrow_command]
    _set_redaction(settings)
    return _run(settings, lambda runtime: handler(runtime, args))


async def _deploy(runtime: Runtime, args: argparse.Namespace) -> int:
    from eth_account import Account

    from github_app.chains.evm import deploy
    from github_app.chains.keys import load_chain_keys
    from github_app.chains.rpc_http import node_web3

    s = load_chain_keys(runtime.settings)
    missing = [
        n
        for n, v in (
            ("POLYGON_RPC_URL", s.polygon_rpc_url),
            ("POLYGON_ARBITER_KEY", s.polygon_arbiter_key),
            ("POLYGON_TREASURY", s.polygon_treasury),
        )
        if not v
    ]
    if missing:
        return _err(f"escrow deploy needs {', '.join(missing)}")
    assert s.polygon_rpc_url and s.polygon_arbiter_key and s.polygon_treasury
    w3 = node_web3(s.polygon_rpc_url)
    if int(await w3.eth.chain_id) != s.polygon_chain_id:
        return _err(f"the RPC endpoint is not chain POLYGON_CHAIN_ID={s.polygon_chain_id}")
    arbiter = Account.from_key(s.polygon_arbiter_key).address
    try:
        address = await deploy(w3, s.polygon_arbiter_key, arbiter, s.polygon_treasury, s.polygon_chain_id)
    finally:
        await w3.provider.disconnect()  # type: ignore[attr-defined]
    print(address)
    print(f"set POLYGON_ESCROW_CONTRACT={address} (arbiter {arbiter}, treasury {s.polygon_treasury})", file=sys.stderr)
    return 0


async def _rows(runtime: Runtime, escrow_id: str | None = None) -> list[dict[str, Any]]:
    chains = Chains.from_settings(runtime.settings)
    async with runtime.sessionmaker() as session:
        stmt = select(Escrow, EscrowChainState, EscrowReleaseRequest).outerjoin(
            EscrowChainState, EscrowChainState.escrow_id == Escrow.id
        )
        stmt = stmt.outerjoin(EscrowReleaseRequest, EscrowReleaseRequest.escrow_id == Escrow.id)
        if escrow_id is not None:
            stmt = stmt.where(Escrow.id == escrow_id)
        rows = (await session.execute(stmt.order_by(Escrow.created_at))).all()
        result = []
        for escrow, state, release in rows:
            item: dict[str, Any] = {
                "id": escrow.id,
                "chain": escrow.blockchain,
                "status": str(escrow.status),
                "amount": escrow.amount,
                "currency": escrow.currency,
                "feeBps": escrow.platform_fee,
                "contractAddress": escrow.contract_address,
                "transactionHash": escrow.transaction_hash,
                "releaseTransactionHash": escrow.release_transaction_hash,
                "fundingProblem": state.problem if state else None,
                "refundTransactionHash": state.refund_tx_hash if state else None,
                "release": release_text(release) if release else None,
                "chainProblem": chains.problem(escrow.blockchain),
            }
            if escrow_id is not None:
                txs = (
                    (await session.execute(select(EscrowChainTx).where(EscrowChainTx.escrow_id == escrow.id)))
                    .scalars()
                    .all()
                )
                if escrow.status == EscrowStatus.PENDING:
                    item["fundingInstructions"] = await funding_instructions(session, runtime.settings, escrow)
                item["transactions"] = [
                    {"kind": t.kind, "hash": t.tx_hash, "state": t.state, "nonce": t.nonce, "error": t.error}
                    for t in txs
                ]
            result.append(item)
        # Releases of DONE stories not bound to an escrow yet: waiting for funding, or failed.
        if escrow_id is None:
            unbound = (
                (await session.execute(select(EscrowReleaseRequest).where(EscrowReleaseRequest.escrow_id.is_(None))))
                .scalars()
                .all()
            )
            for release in unbound:
                result.append({"id": None, "story": release.story_id, "release": release_text(release)})
    return result


async def _list(runtime: Runtime, args: argparse.Namespace) -> int:
    rows = await _rows(runtime)
    if args.json:
        _out(json.dumps(rows, indent=1, default=str))
        return 0
    print(f"{'ESCROW':36} {'CHAIN':8} {'STATUS':9} {'AMOUNT':>24} {'CUR':8} RELEASE / PROBLEM")
    for r in rows:
        if r["id"] is None:
            _out(f"{'(story ' + r['story'][:26] + ')':36} {'':8} {'':9} {'':>24} {'':8} {r['release']}")
            continue
        note = r["release"] or r["fundingProblem"] or ""
        if r["chainProblem"] and r["status"] in ("PENDING", "FUNDED"):
            note = f"{note + '; ' if note else ''}{r['chainProblem']}"
        _out(f"{r['id']:36} {r['chain']:8} {r['status']:9} {r['amount']:>24} {r['currency']:8} {note}")
    return 0


async def _show(runtime: Runtime, args: argparse.Namespace) -> int:
    rows = await _rows(runtime, args.escrow_id)
    if not rows:
        return _err(f"no escrow {args.escrow_id!r}")
    instructions = rows[0].pop("fundingInstructions", None)
    _out(json.dumps(rows[0], indent=1, default=str))
    if instructions:  # a PENDING escrow: what the client does next, as `/bmad escrow` tells them
        _out("\n" + instructions)
    return 0


async def _sync(runtime: Runtime, _args: argparse.Namespace) -> int:
    from github_app.escrow.funding import sync_funding

    chains = Chains.from_settings(runtime.settings)
    try:
        report = await sync_funding(runtime, chains)
    finally:
        await chains.close()
    for escrow_id in report.funded:
        print(f"{escrow_id}: FUNDED")
    for escrow_id, problem in report.problems.items():
        _out(f"{escrow_id}: NOT accepted: {problem}")
    for escrow_id, why in report.not_configured.items():
        print(f"{escrow_id}: skipped: {why}")
    print(f"{len(report.funded)} funded, {len(report.not_funded)} not funded yet, {len(report.problems)} problems")
    return 1 if report.problems else 0


async def _retry(runtime: Runtime, args: argparse.Namespace) -> int:
    from github_app.escrow.retry import RetryRefused, retry_release

    async with runtime.sessionmaker() as session, session.begin():
        T = EscrowReleaseRequest
        request = (
            (
                await session.execute(
                    select(T).where(or_(T.escrow_id == args.id, T.story_id == args.id, T.id == args.id))
                )
            )
            .scalars()
            .first()
        )
        if request is None:
            return _err(f"no release for {args.id!r} (an escrow id, story id or release id)")
        try:
            await retry_release(session, request)
        except RetryRefused as exc:
            return _err(str(exc))
    subject = f"story {request.story_id}" if request.story_id else f"opportunity {request.opportunity_id}"
    print(f"release of {subject}: queued again")
    return 0


async def _refund(runtime: Runtime, args: argparse.Namespace) -> int:
    from github_app.escrow.refunds import RefundRefused, refund

    chains = Chains.from_settings(runtime.settings)
    try:
        result = await refund(runtime, chains, args.escrow_id)
    except RefundRefused as exc:
        return _err(str(exc))
    finally:
        await chains.close()
    print(f"{result.escrow_id}: REFUNDED {result.tx_hash} {result.tx_url}")
    return 0


async def _withdraw_refund(runtime: Runtime, args: argparse.Namespace) -> int:
    from github_app.escrow.refunds import RefundRefused, withdraw_refund

    try:
        print(await withdraw_refund(runtime, args.escrow_id))
    except RefundRefused as exc:
        return _err(str(exc))
    return 0


async def _rescue(runtime: Runtime, args: argparse.Namespace) -> int:
    from github_app.escrow.rescue import RescueRefused, rescue

    chains = Chains.from_settings(runtime.settings)
    try:
        result = await rescue(runtime, chains, args.token, args.to)
    except RescueRefused as exc:
        return _err(str(exc))
    finally:
        await chains.close()
    print(f"rescued {result.amount} of {result.token} to {result.to}: {result.tx_hash} {result.tx_url}")
    return 0
