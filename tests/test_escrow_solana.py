"""Escrow release on Solana, on LiteSVM's real SPL Token programs: the app creates the escrow account
at create_with_seed(authority, id without dashes, Token program), the client funds it, one atomic
transaction pays the expert and the treasury and closes the account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_PROGRAM_ID

from github_app.domain.escrow import U64_MAX, fee_split
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.releases import Releaser
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.chain.solana_env import SolanaEnv, solana_env
from tests.fake_github import FakeGitHub
from tests.harness import App
from tests.workflow import DEV, Market, seed_market

EXPERT = Keypair().pubkey()


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "solana", str(EXPERT))
    yield m


@pytest.fixture
def sol() -> SolanaEnv:
    return solana_env()


def test_the_escrow_address_is_create_with_seed_of_the_id_without_dashes(sol: SolanaEnv) -> None:
    escrow_id = "3f2b8c1e-9d4a-4b7e-8f00-1234567890ab"
    expected = Pubkey.create_with_seed(sol.authority.pubkey(), "3f2b8c1e9d4a4b7e8f001234567890ab", TOKEN_PROGRAM_ID)
    assert sol.chain().address_of(escrow_id) == str(expected)


async def test_done_story_paid_in_usdc_spl_exactly_once(app: App, market: Market, sol: SolanaEnv) -> None:
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    story_id = await done_story(app, market)

    amount = 1_000_003
    escrow_id = await create_escrow(
        market,
        story_id,
        chain="solana",
        currency="USDC-SPL",
        amount=amount,
        fee_bps=750,
        contract_address="placeholder",
    )
    async with market.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
            {"a": chain.address_of(escrow_id), "e": escrow_id},
        )
    report = await sync_funding(app.runtime, chains)  # creates the account; nothing in it yet
    assert report.not_funded == [escrow_id]
    sol.fund(chain.escrow_account(escrow_id), amount)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]

    releaser = Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0)
    await releaser.run_until_idle()
    expert, fee = fee_split(amount, 750)
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (expert, fee)
    assert sol.svm.get_account(chain.escrow_account(escrow_id)) is None  # closed
    row = await escrow_row(market, escrow_id)
    assert row["status"] == "RELEASED" and len(row["release_tx"]) > 80  # a base58 signature
    # A second release fails on-chain: the account is gone.
    with pytest.raises(RuntimeError):
        signed = await chain.build_release(escrow_id, str(EXPERT), amount, 750)
        sol.svm.expire_blockhash()
        await chain.transport.send(
            __import__("solders.transaction", fromlist=["Transaction"]).Transaction.from_bytes(signed.raw)
        )
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (expert, fee)


@pytest.mark.parametrize(("amount", "fee_bps"), [(1, 0), (1, 10_000), (U64_MAX, 0), (U64_MAX, 10_000), (U64_MAX, 333)])
async def test_fee_edge_cases_on_solana(sol: SolanaEnv, amount: int, fee_bps: int) -> None:
    chain = sol.chain()
    import uuid

    escrow_id = str(uuid.uuid4())
    assert await chain.ensure_account(escrow_id)
    sol.fund(chain.escrow_account(escrow_id), amount)
    signed = await chain.build_release(escrow_id, str(EXPERT), amount, fee_bps)
    await chain.broadcast(signed)
    assert (await chain.outcome(signed)).succeeded
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == fee_split(amount, fee_bps)


@pytest.mark.parametrize("step", ["signed", "broadcast", "confirmed"])
async def test_a_crash_at_any_step_pays_once_on_solana(app: App, market: Market, sol: SolanaEnv, step: str) -> None:
    from tests.test_escrow_release import Crash, crash_at, expire_leases

    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    story_id = await done_story(app, market)
    escrow_id = await create_escrow(
        market, story_id, chain="solana", currency="USDC-SPL", amount=5000, fee_bps=500, contract_address="x"
    )
    async with market.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
            {"a": chain.address_of(escrow_id), "e": escrow_id},
        )
    await sync_funding(app.runtime, chains)
    sol.fund(chain.escrow_account(escrow_id), 5000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    with pytest.raises(Crash):
        await Releaser(app.runtime, chains, poll_seconds=0.01, fault=crash_at(step)).run_until_idle()
    await expire_leases(market)
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (4750, 250)
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 1


@pytest.mark.external_chain
async def test_release_through_solana_py_async_client(app: App, market: Market, sol: SolanaEnv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The production transport: AsyncClient over HTTP to a JSON-RPC server backed by LiteSVM, the chain
    configured from settings (keypair file, treasury, mint) exactly as in production."""
    import dataclasses
    import json

    from github_app.chains.solana import RpcTransport
    from tests.chain.solana_rpc import LiteSvmRpc

    rpc = LiteSvmRpc(sol.svm)
    url = await rpc.start()
    keypair = tmp_path / "authority.json"
    keypair.write_text(json.dumps(list(bytes(sol.authority))))
    settings = dataclasses.replace(
        app.runtime.settings,
        solana_rpc_url=url,
        solana_authority_keypair_path=str(keypair),
        solana_treasury=str(sol.treasury),
        solana_usdc_mint=str(sol.mint),
        solana_commitment="finalized",
    )
    chains = Chains.from_settings(settings)
    chain = chains.get("solana")
    assert isinstance(chain.transport, RpcTransport)
    try:
        story_id = await done_story(app, market)
        escrow_id = await create_escrow(
            market, story_id, chain="solana", currency="USDC-SPL", amount=70_000, fee_bps=1000, contract_address="x"
        )
        async with market.runtime.engine.begin() as conn:
            from sqlalchemy import text

            await conn.execute(
                text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
                {"a": chain.address_of(escrow_id), "e": escrow_id},
            )
        assert (await sync_funding(app.runtime, chains)).not_funded == [escrow_id]
        sol.fund(chain.escrow_account(escrow_id), 70_000)
        assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
        await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
        assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (63_000, 7_000)
        assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
    finally:
        await chain.transport.close()
        await rpc.close()


async def test_done_story_paid_in_sol_exactly(app: App, market: Market, sol: SolanaEnv) -> None:
    from solders.system_program import TransferParams, transfer

    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    story_id = await done_story(app, market)
    amount = 2 * 10**9 + 1
    escrow_id = await create_escrow(
        market, story_id, chain="solana", currency="SOL", amount=amount, fee_bps=500, contract_address="x"
    )
    account = chain.escrow_account(escrow_id, "SOL")
    async with market.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'), {"a": str(account), "e": escrow_id}
        )
    assert (await sync_funding(app.runtime, chains)).not_funded == [escrow_id]
    sol.send(
        sol.client, [transfer(TransferParams(from_pubkey=sol.client.pubkey(), to_pubkey=account, lamports=amount))]
    )
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    expert_before = sol.svm.get_balance(EXPERT) or 0
    retries_before = release_retries()
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    assert release_retries() == retries_before  # a payment that went through is not reported as retried
    expert, fee = fee_split(amount, 500)
    assert sol.svm.get_balance(EXPERT) - expert_before == expert
    assert sol.svm.get_balance(sol.treasury) == fee
    assert not sol.svm.get_balance(account)  # emptied, so gone
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


def release_retries() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("escrow_releases_total", {"chain": "unknown", "outcome": "retry"}) or 0.0


# --- refunds -------------------------------------------------------------------------------------


async def funded_solana_escrow(
    app: App, market: Market, sol: SolanaEnv, *, currency: str, amount: int, number: int = 3
) -> str:
    """A DONE story's Solana escrow, its account created by sync and funded by the client."""
    from solders.system_program import TransferParams, transfer
    from sqlalchemy import text

    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    story_id = await done_story(app, market, number=number)
    escrow_id = await create_escrow(
        market, story_id, chain="solana", currency=currency, amount=amount, fee_bps=500, contract_address="x"
    )
    account = chain.escrow_account(escrow_id, currency)
    async with market.runtime.engine.begin() as conn:
        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'), {"a": str(account), "e": escrow_id}
        )
    assert (await sync_funding(app.runtime, chains)).not_funded == [escrow_id]
    if currency == "SOL":
        client = sol.client.pubkey()
        sol.send(sol.client, [transfer(TransferParams(from_pubkey=client, to_pubkey=account, lamports=amount))])
    else:
        sol.fund(account, amount)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    return escrow_id


def client_balance(sol: SolanaEnv, currency: str) -> int:
    if currency == "SOL":
        return int(sol.svm.get_balance(sol.client.pubkey()) or 0)
    return sol.balance(sol.client.pubkey())


@pytest.mark.parametrize(("currency", "amount"), [("USDC-SPL", 4_200_001), ("SOL", 3 * 10**9 + 7)])
async def test_refund_pays_the_client_back_exactly_in_one_transaction(
    app: App, market: Market, sol: SolanaEnv, currency: str, amount: int
) -> None:
    from solders.signature import Signature

    from github_app.escrow.refunds import refund
    from tests.workflow import CLIENT

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    escrow_id = await funded_solana_escrow(app, market, sol, currency=currency, amount=amount)
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    before = client_balance(sol, currency)

    result = await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)

    assert client_balance(sol, currency) - before == amount
    assert not sol.svm.get_balance(chain.escrow_account(escrow_id, currency))  # closed
    assert sol.balance(EXPERT) == 0 and sol.balance(sol.treasury) == 0 and not sol.svm.get_balance(sol.treasury)
    landed = sol.svm.get_transaction(Signature.from_string(result.tx_hash))
    assert any(f"escrow-refund:{escrow_id}" in line for line in landed.logs())  # type: ignore[union-attr]
    assert result.tx_url.endswith(f"/tx/{result.tx_hash}?cluster=devnet")
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"
    assert await market.rows("SELECT refund_tx_hash FROM escrow_chain_state WHERE escrow_id = :e", e=escrow_id) == [
        (result.tx_hash,)
    ]
    # Again: the same refund is reported, nothing moves.
    again = await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert again.tx_hash == result.tx_hash
    assert client_balance(sol, currency) - before == amount
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 1
    # The story's release never binds the refunded escrow: the expert gets nothing.
    await Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0).run_until_idle()
    assert await market.rows("SELECT state, escrow_id FROM escrow_release_request") == [("pending", None)]
    assert sol.balance(EXPERT) == 0 and not sol.svm.get_balance(EXPERT)


async def test_refund_without_a_client_wallet_is_refused_and_moves_nothing(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    from github_app.escrow.refunds import RefundRefused, refund

    escrow_id = await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=900)
    chains = Chains(backends={"solana": sol.chain()})
    with pytest.raises(RefundRefused, match="client has no Solana wallet"):
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert sol.balance(sol.client.pubkey()) == 0
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 0


async def test_a_refund_in_flight_while_a_release_is_being_prepared_leaves_the_release_unsigned(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    """An operator's refund and the story's release race for one escrow: each commits to go ahead only under
    the escrow's own row, so a release that passed its checks before the refund was requested is still never
    signed while the refund is in flight (sent, not yet confirmed and marked)."""
    from github_app.escrow.refunds import refund
    from tests.test_escrow_release import Crash, crash_at
    from tests.workflow import CLIENT

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    escrow_id = await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=7000)
    chain = sol.chain()
    operator = Chains(backends={"solana": chain})
    interrupted: list[str] = []

    class RefundWhileReading:
        """The real chain; while the release reads it, the operator's refund is sent and its command dies
        before the refund is confirmed and marked."""

        def __getattr__(self, name: str) -> Any:
            return getattr(chain, name)

        async def read(self, escrow: str, currency: str) -> Any:
            seen = await chain.read(escrow, currency)
            if not interrupted:
                with pytest.raises(Crash):
                    await refund(app.runtime, operator, escrow_id, poll_seconds=0.01, fault=crash_at("broadcast"))
                interrupted.append(escrow)
            return seen

    await Releaser(app.runtime, Chains(backends={"solana": RefundWhileReading()}), poll_seconds=0.01).run_until_idle()

    assert interrupted
    assert await market.rows("SELECT kind FROM escrow_chain_tx") == [("refund",)]  # no release was ever signed
    [(state, reason)] = await market.rows("SELECT state, last_error FROM escrow_release_request")
    # The release failed ("refunding this escrow"); the worker then reconciled the recorded refund that
    # landed, marked the escrow REFUNDED and cancelled the release.
    assert state == "cancelled" and "refunding this escrow" in reason
    # The operator runs the refund again: it is reconciled, and the client is the only one paid.
    await refund(app.runtime, operator, escrow_id, poll_seconds=0.01)
    assert sol.balance(sol.client.pubkey()) == 7000
    assert sol.balance(EXPERT) == 0 and sol.balance(sol.treasury) == 0
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"


@pytest.mark.parametrize("step", ["signed", "broadcast", "confirmed"])
async def test_a_crash_at_any_step_of_a_refund_pays_the_client_once(
    app: App, market: Market, sol: SolanaEnv, step: str
) -> None:
    from github_app.escrow.refunds import refund
    from tests.test_escrow_release import Crash, crash_at
    from tests.workflow import CLIENT

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    escrow_id = await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=6000)
    chains = Chains(backends={"solana": sol.chain()})
    with pytest.raises(Crash):
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01, fault=crash_at(step))
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"  # never marked before confirmation
    result = await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert sol.balance(sol.client.pubkey()) == 6000
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"
    assert await market.rows("SELECT tx_hash, kind, state FROM escrow_chain_tx") == [
        (result.tx_hash, "refund", "confirmed")
    ]


async def test_a_refund_whose_blockhash_expired_unsent_is_rebuilt_only_after_the_chain_is_past_it(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    from github_app.escrow.refunds import RefundRefused, refund
    from tests.test_escrow_release import Crash, crash_at
    from tests.workflow import CLIENT

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    escrow_id = await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=777)
    chains = Chains(backends={"solana": sol.chain()})
    with pytest.raises(Crash):  # signed and recorded, never sent
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01, fault=crash_at("signed"))
    [(first, last_valid)] = await market.rows("SELECT tx_hash, last_valid_block_height FROM escrow_chain_tx")
    sol.svm.expire_blockhash()
    sol.svm.warp_to_slot(int(last_valid) + 1)
    with pytest.raises(RefundRefused, match="can never land"):
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert sol.balance(sol.client.pubkey()) == 0
    result = await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert result.tx_hash != first
    assert sol.balance(sol.client.pubkey()) == 777
    assert sorted(await market.rows("SELECT state FROM escrow_chain_tx")) == [("confirmed",), ("dropped",)]


async def rpc_env(sol: SolanaEnv, url: str, db_url: str, tmp_path: Any) -> dict[str, str]:
    """The environment of a production process whose Solana is the LiteSVM-backed JSON-RPC server."""
    import json
    import os

    keypair = tmp_path / "authority.json"
    keypair.write_text(json.dumps(list(bytes(sol.authority))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SOLANA_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=db_url,
        SOLANA_RPC_URL=url,
        SOLANA_AUTHORITY_KEYPAIR_PATH=str(keypair),
        SOLANA_TREASURY=str(sol.treasury),
        SOLANA_USDC_MINT=str(sol.mint),
        SOLANA_COMMITMENT="finalized",
        LOG_LEVEL="WARNING",
    )
    return env


async def run_module(env: dict[str, str], module: str, *args: str) -> tuple[int, str]:
    """A process of its own, waited for asynchronously: this process's event loop serves its JSON-RPC
    calls meanwhile. Its exit code and standard output."""
    import asyncio
    import sys
    from pathlib import Path

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.external_chain
async def test_escrow_refund_command_through_json_rpc(
    app: App,
    market: Market,
    sol: SolanaEnv,
    db_url: str,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """`bmad-app escrow refund ID` as an operator runs it, on a USDC-SPL escrow, through solana-py's
    AsyncClient: the client is paid back once, and running it again reports the same refund."""
    from tests.chain.solana_rpc import LiteSvmRpc
    from tests.workflow import CLIENT

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    escrow_id = await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=31_337)
    rpc = LiteSvmRpc(sol.svm)
    env = await rpc_env(sol, await rpc.start(), db_url, tmp_path)
    try:
        await app.runtime.engine.dispose()
        code, out = await run_module(env, "github_app", "escrow", "refund", escrow_id)
        assert code == 0 and out.startswith(f"{escrow_id}: REFUNDED ")
        assert await run_module(env, "github_app", "escrow", "refund", escrow_id) == (0, out)
    finally:
        await rpc.close()
    assert sol.balance(sol.client.pubkey()) == 31_337
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 1


@pytest.mark.external_chain
async def test_kill_9_between_every_step_pays_exactly_once_through_json_rpc(
    app: App,
    market: Market,
    sol: SolanaEnv,
    db_url: str,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Release workers as their own processes, configured from SOLANA_* like production (solana-py's
    AsyncClient to the LiteSVM-backed JSON-RPC server), each killed with SIGKILL right after one step:
    every escrow is paid exactly once."""
    import signal

    from sqlalchemy import text

    from tests.chain.solana_rpc import LiteSvmRpc

    rpc = LiteSvmRpc(sol.svm)
    env = await rpc_env(sol, await rpc.start(), db_url, tmp_path)

    async def run_worker(kill_after: str | None = None) -> int:
        return (await run_module(env, "tests.escrow_worker_process", *([kill_after] if kill_after else [])))[0]

    steps = ["bound", "signed", "broadcast", "confirmed"]
    escrows = []
    try:
        for number, _ in enumerate(steps, start=3):
            escrows.append(
                await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=1000, number=number)
            )
        await app.runtime.engine.dispose()  # SQLite: the worker processes write; this one only reads later
        for step in steps:
            # Each run pays at most one escrow before it is killed after `step`.
            assert await run_worker(kill_after=step) == -signal.SIGKILL
            async with app.runtime.engine.begin() as conn:
                await conn.execute(text("UPDATE escrow_release_request SET lease_expires_at = '2000-01-01 00:00:00'"))
        assert await run_worker() == 0
    finally:
        await rpc.close()
    for escrow_id in escrows:
        assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (4 * 950, 4 * 50)
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 4
    assert await market.rows("SELECT state FROM escrow_release_request") == [("released",)] * 4


async def test_a_release_on_chain_with_no_record_is_left_to_an_operator_on_solana(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    """A closed Solana account keeps no status: the release is not guessed, it fails with the memo to
    look for, and nothing is paid twice."""
    escrow_id = await funded_solana_escrow(app, market, sol, currency="USDC-SPL", amount=1000)
    chain = sol.chain()
    await chain.broadcast(await chain.build_release(escrow_id, str(EXPERT), 1000, 500))  # by hand
    await Releaser(app.runtime, Chains(backends={"solana": chain}), poll_seconds=0.01).run_until_idle()
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (950, 50)
    [(state, reason)] = await market.rows("SELECT state, last_error FROM escrow_release_request")
    assert state == "failed" and f"memo escrow-release:{escrow_id}" in reason
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 0
