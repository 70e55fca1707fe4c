"""Escrow release on Solana, on LiteSVM's real SPL Token programs: the app creates the escrow account
at create_with_seed(authority, id without dashes, Token program), the client funds it, one atomic
transaction pays the expert and the treasury and closes the account."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    expert, fee = fee_split(amount, 500)
    assert sol.svm.get_balance(EXPERT) - expert_before == expert
    assert sol.svm.get_balance(sol.treasury) == fee
    assert not sol.svm.get_balance(account)  # emptied, so gone
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
