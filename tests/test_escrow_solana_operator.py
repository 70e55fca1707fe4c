"""Solana escrows that must not get stuck and operators who must not be misled: a refused refund, an
account holding more than its amount, a SOL client who pays before the first sync, a transaction the
node refuses, failures and drops counted at the configured commitment. On LiteSVM in-process and, for
the transport, through solana-py's AsyncClient to the LiteSVM-backed JSON-RPC server."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from sqlalchemy import text

from github_app.chains.solana import LiteSvmTransport, RpcTransport, SolanaChain
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.refunds import RefundRefused, refund, withdraw_refund
from github_app.escrow.releases import Releaser
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.chain.solana_env import SolanaEnv, solana_env
from tests.chain.solana_rpc import LiteSvmRpc
from tests.fake_github import FakeGitHub
from tests.harness import App
from tests.test_escrow_release import Crash, crash_at
from tests.test_escrow_solana import EXPERT, run_module
from tests.workflow import CLIENT, DEV, Market, seed_market


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "solana", str(EXPERT))
    yield m


@pytest.fixture
def sol() -> SolanaEnv:
    return solana_env()


async def pending_escrow(
    app: App, market: Market, chain: SolanaChain, *, currency: str, amount: int, fee_bps: int = 500, number: int = 3
) -> str:
    """A DONE story's escrow row, its contractAddress the escrow account; nothing on-chain yet."""
    story_id = await done_story(app, market, number=number)
    escrow_id = await create_escrow(
        market, story_id, chain="solana", currency=currency, amount=amount, fee_bps=fee_bps, contract_address="x"
    )
    async with market.runtime.engine.begin() as conn:
        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
            {"a": chain.address_of(escrow_id, currency), "e": escrow_id},
        )
    return escrow_id


def pay_sol(sol: SolanaEnv, to: Pubkey, lamports: int) -> None:
    sol.send(sol.client, [transfer(TransferParams(from_pubkey=sol.client.pubkey(), to_pubkey=to, lamports=lamports))])


def lamports(sol: SolanaEnv, owner: Pubkey) -> int:
    return int(sol.svm.get_balance(owner) or 0)


async def release_state(market: Market) -> tuple[str, str | None]:
    [(state, reason)] = await market.rows("SELECT state, last_error FROM escrow_release_request")
    return state, reason


# --- a refused refund does not veto the release ---------------------------------------------------


async def test_a_refund_refused_before_funding_leaves_the_release_free(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="USDC-SPL", amount=10_000)
    assert (await sync_funding(app.runtime, chains)).not_funded == [escrow_id]

    with pytest.raises(RefundRefused, match="not funded on-chain"):
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert await market.rows("SELECT refund_requested_at FROM escrow_chain_state") == [(None,)]

    sol.fund(chain.escrow_account(escrow_id), 10_000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    await Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0).run_until_idle()
    assert await release_state(market) == ("released", None)
    assert (sol.balance(EXPERT), sol.balance(sol.treasury), sol.balance(sol.client.pubkey())) == (9_500, 500, 0)
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


async def test_a_refund_that_can_never_land_is_withdrawn_and_the_release_goes_ahead(
    app: App, market: Market, sol: SolanaEnv, db_url: str
) -> None:
    from github_app.escrow.commands import _retry

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="USDC-SPL", amount=4_000)
    await sync_funding(app.runtime, chains)
    sol.fund(chain.escrow_account(escrow_id), 4_000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    with pytest.raises(Crash):  # signed and recorded, never sent
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01, fault=crash_at("signed"))

    # Signed and still able to land: not withdrawn.
    with pytest.raises(RefundRefused, match="is signed .* and may still land"):
        await withdraw_refund(app.runtime, escrow_id)

    # Its blockhash expires unsent: it can never land; the release stays refused until the operator
    # withdraws the request.
    [(last_valid,)] = await market.rows("SELECT last_valid_block_height FROM escrow_chain_tx")
    sol.svm.expire_blockhash()
    sol.svm.warp_to_slot(int(last_valid) + 1)
    with pytest.raises(RefundRefused, match="can never land"):
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    state, reason = await release_state(market)
    assert state == "failed" and "refunding this escrow" in (reason or "")
    await app.runtime.engine.dispose()
    code, out = await run_module(
        {"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}, "github_app", "escrow", "withdraw-refund", escrow_id
    )
    assert code == 0 and out.startswith(f"{escrow_id}: refund request withdrawn")
    assert await market.rows("SELECT refund_requested_at FROM escrow_chain_state") == [(None,)]
    assert await run_module({"DATABASE_URL": db_url}, "github_app", "escrow", "withdraw-refund", escrow_id) == (1, "")

    await _retry(app.runtime, argparse.Namespace(id=escrow_id))
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    assert await release_state(market) == ("released", None)
    assert (sol.balance(EXPERT), sol.balance(sol.treasury), sol.balance(sol.client.pubkey())) == (3_800, 200, 0)


# --- an account holding more than its amount is released -------------------------------------------


@pytest.mark.parametrize("when", ["before funding is accepted", "after funding is accepted"])
async def test_usdc_beyond_the_amount_goes_back_to_the_client_in_the_release(
    app: App, market: Market, sol: SolanaEnv, when: str
) -> None:
    from solders.signature import Signature

    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="USDC-SPL", amount=20_000, fee_bps=250)
    await sync_funding(app.runtime, chains)
    account = chain.escrow_account(escrow_id)
    sol.fund(account, 20_000)
    if when.startswith("after"):
        assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    sol.fund(account, 7)  # one more transfer: anyone's dust, or the client's own mistake
    if when.startswith("before"):
        assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]

    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()

    # 2.5 % of 20,000 is 500; the 7 extra go back to the client.
    assert (sol.balance(EXPERT), sol.balance(sol.treasury), sol.balance(sol.client.pubkey())) == (19_500, 500, 7)
    assert sol.svm.get_account(account) is None
    [(tx_hash,)] = await market.rows("SELECT tx_hash FROM escrow_chain_tx")  # one transaction did all of it
    logs = sol.svm.get_transaction(Signature.from_string(tx_hash)).logs()  # type: ignore[union-attr]
    assert any(f"escrow-release:{escrow_id}" in line for line in logs)
    # Top-level Token program calls: the three transfers (expert, treasury, client) and the close.
    assert sum(line == "Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA invoke [1]" for line in logs) == 4
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


async def test_sol_beyond_the_amount_goes_back_to_the_client_in_the_release(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=2_000_000_000, fee_bps=500)
    account = chain.escrow_account(escrow_id, "SOL")
    pay_sol(sol, account, 2_000_000_000)
    pay_sol(sol, account, 12_345)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    client_before = lamports(sol, sol.client.pubkey())

    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()

    assert lamports(sol, EXPERT) == 1_900_000_000
    assert lamports(sol, sol.treasury) == 100_000_000
    assert lamports(sol, sol.client.pubkey()) - client_before == 12_345
    assert lamports(sol, account) == 0
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


async def test_an_excess_with_no_client_wallet_to_return_it_to_fails_with_the_remedy_and_moves_nothing(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="USDC-SPL", amount=1_000)
    await sync_funding(app.runtime, chains)
    sol.fund(chain.escrow_account(escrow_id), 1_001)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    state, reason = await release_state(market)
    assert state == "failed"
    assert "holds 1001, more than the row's 1000" in (reason or "") and "wallet set" in (reason or "")
    assert sol.balance(EXPERT) == 0 and await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 0


async def test_less_than_the_amount_is_never_funded_nor_released(app: App, market: Market, sol: SolanaEnv) -> None:
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="USDC-SPL", amount=1_000)
    await sync_funding(app.runtime, chains)
    sol.fund(chain.escrow_account(escrow_id), 999)
    report = await sync_funding(app.runtime, chains)
    assert report.funded == [] and "amount on-chain 999 < 1000" in report.problems[escrow_id]


# --- SOL: the client's lamports are theirs, whenever they pay ---------------------------------------


@pytest.mark.parametrize("when", ["before the first sync", "after the first sync"])
async def test_a_sol_client_paying_exactly_the_amount_is_accepted_and_refunded_every_lamport(
    app: App, market: Market, sol: SolanaEnv, when: str
) -> None:
    await set_wallet(market, CLIENT, "solana", str(sol.client.pubkey()))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    amount = 2_000_000_000
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=amount)
    account = chain.escrow_account(escrow_id, "SOL")
    if when.startswith("after"):
        assert (await sync_funding(app.runtime, chains)).not_funded == [escrow_id]
    client_before = lamports(sol, sol.client.pubkey())
    pay_sol(sol, account, amount)
    paid = client_before - lamports(sol, sol.client.pubkey())  # the amount and the client's own fee
    report = await sync_funding(app.runtime, chains)
    assert report.funded == [escrow_id], report.problems

    await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert lamports(sol, sol.client.pubkey()) == client_before - (paid - amount)  # only their own fee is gone
    assert lamports(sol, account) == 0
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"


async def test_a_sol_client_paying_before_the_first_sync_gets_the_expert_paid(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=3_000_000_000, fee_bps=1_000)
    authority_before = lamports(sol, sol.authority.pubkey())
    pay_sol(sol, chain.escrow_account(escrow_id, "SOL"), 3_000_000_000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    assert (lamports(sol, EXPERT), lamports(sol, sol.treasury)) == (2_700_000_000, 300_000_000)
    assert authority_before - lamports(sol, sol.authority.pubkey()) == 5_000  # its fee only: no rent taken


# --- a transaction the node refuses ends FAILED with the node's error -------------------------------


async def refused_release(app: App, market: Market, sol: SolanaEnv, chains: Chains, chain: SolanaChain) -> str:
    """A SOL escrow whose expert share (500,000 lamports) cannot open the expert's fresh account (rent
    needs 890,880): every node refuses the release at preflight."""
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=1_000_000, fee_bps=5_000)
    pay_sol(sol, chain.escrow_account(escrow_id, "SOL"), 1_000_000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    return escrow_id


async def test_a_release_the_node_refuses_fails_with_its_error_and_is_not_signed_again(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await refused_release(app, market, sol, chains, chain)
    releaser = Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0)
    await releaser.run_until_idle()
    state, reason = await release_state(market)
    assert state == "failed" and "the node refused the release transaction" in (reason or "")
    assert "InsufficientFundsForRent" in (reason or "")
    [(tx_state, error)] = await market.rows("SELECT state, error FROM escrow_chain_tx")
    assert tx_state == "dropped" and "InsufficientFundsForRent" in error
    await releaser.run_until_idle()
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 1
    assert lamports(sol, chain.escrow_account(escrow_id, "SOL")) == 1_000_000  # nothing moved


@pytest.mark.external_chain
async def test_a_release_the_node_refuses_at_preflight_fails_through_json_rpc(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    rpc = LiteSvmRpc(sol.svm)
    url = await rpc.start()
    chain = SolanaChain(
        RpcTransport(url, "finalized"), sol.authority, treasury=str(sol.treasury), usdc_mint=str(sol.mint)
    )
    chains = Chains(backends={"solana": chain})
    try:
        escrow_id = await refused_release(app, market, sol, chains, chain)
        await Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0).run_until_idle()
    finally:
        await chain.close()
        await rpc.close()
    state, reason = await release_state(market)
    assert state == "failed" and "the node refused the release transaction" in (reason or "")
    assert "InsufficientFundsForRent" in (reason or "")
    assert len(rpc.sent) == 1 and await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 1
    assert lamports(sol, chain.escrow_account(escrow_id, "SOL")) == 1_000_000


# --- commitment and dropped transactions over JSON-RPC ---------------------------------------------


@pytest.mark.external_chain
@pytest.mark.parametrize(("commitment", "slots_to_count"), [("confirmed", 1), ("finalized", 3)])
async def test_a_failure_counts_only_at_the_configured_commitment(
    app: App, market: Market, sol: SolanaEnv, commitment: str, slots_to_count: int
) -> None:
    """A transaction that lands failed (its preflight passed on older state) is not called failed while
    it is only processed: its fork may still be dropped, as a success would be."""
    rpc = LiteSvmRpc(sol.svm, confirmed_depth=1, finalized_depth=3)
    url = await rpc.start()
    rpc.advance_per_request = 0
    chain = SolanaChain(
        RpcTransport(url, commitment), sol.authority, treasury=str(sol.treasury), usdc_mint=str(sol.mint)
    )
    try:
        escrow_id = await refused_release(app, market, sol, Chains(backends={"solana": chain}), chain)
        signed = await chain.build_release(escrow_id, str(EXPERT), 1_000_000, 5_000, "SOL")
        rpc.skip_simulation = True
        await chain.broadcast(signed)
        outcomes = []
        for _ in range(slots_to_count + 1):
            outcomes.append(await chain.outcome(signed))
            rpc.advance(1)
    finally:
        await chain.close()
        await rpc.close()
    assert [o.landed for o in outcomes] == [False] * slots_to_count + [True]
    assert not outcomes[-1].succeeded


@pytest.mark.external_chain
async def test_a_release_dropped_by_the_node_is_signed_again_only_once_expired_and_pays_once(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    rpc = LiteSvmRpc(sol.svm)
    url = await rpc.start()
    rpc.advance_per_request = 4  # 150 blocks of validity pass within a few dozen polls
    chain = SolanaChain(
        RpcTransport(url, "finalized"), sol.authority, treasury=str(sol.treasury), usdc_mint=str(sol.mint)
    )
    chains = Chains(backends={"solana": chain})
    try:
        escrow_id = await pending_escrow(app, market, chain, currency="USDC-SPL", amount=50_000)
        await sync_funding(app.runtime, chains)
        sol.fund(chain.escrow_account(escrow_id), 50_000)
        assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
        first: list[str] = []

        def lose_the_first(signature: str) -> bool:
            first[:] = first or [signature]
            return signature == first[0]

        rpc.drop = lose_the_first  # every send of the first signature is acknowledged and lost
        await Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0).run_until_idle()
    finally:
        await chain.close()
        await rpc.close()
    assert (sol.balance(EXPERT), sol.balance(sol.treasury)) == (47_500, 2_500)
    rows = await market.rows("SELECT tx_hash, state FROM escrow_chain_tx ORDER BY created_at")
    assert [state for _, state in rows] == ["dropped", "confirmed"] and rows[0][0] == first[0]
    assert rpc.sent.count(first[0]) >= 2  # sent again while it could still land
    assert (await escrow_row(market, escrow_id))["release_tx"] == rows[1][0]


async def test_a_transaction_landing_between_the_height_and_status_reads_is_not_called_expired(
    sol: SolanaEnv,
) -> None:
    """The chain moves past the transaction's last valid height right after it lands, between the two
    reads of one check: whichever read comes first, the transaction must be found, not called dropped."""
    import uuid

    from solders.transaction import Transaction

    inner = LiteSvmTransport(sol.svm)
    chain = sol.chain()
    escrow_id = str(uuid.uuid4())
    assert await chain.ensure_account(escrow_id)
    sol.fund(chain.escrow_account(escrow_id), 100)
    signed = await chain.build_release(escrow_id, str(EXPERT), 100, 0)

    class LandsBetweenTheReads:
        fired = False

        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        def _land(self) -> None:
            if not self.fired:
                self.fired = True
                sol.svm.send_transaction(Transaction.from_bytes(signed.raw))
                sol.svm.warp_to_slot(int(signed.last_valid_block_height or 0) + 1)

        async def status(self, signature: Any) -> Any:
            found = await inner.status(signature)
            self._land()
            return found

        async def block_height(self) -> int:
            height = await inner.block_height()
            self._land()
            return height

    chain.transport = LandsBetweenTheReads()
    outcome = await chain.outcome(signed)
    assert not outcome.never_lands
    assert (await chain.outcome(signed)).succeeded
    assert sol.balance(EXPERT) == 100


# --- addresses ---------------------------------------------------------------------------------


async def test_a_contract_address_differing_only_in_case_is_another_solana_address(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=1_000_000_000)
    real = chain.address_of(escrow_id, "SOL")
    folded = real.swapcase()
    async with market.runtime.engine.begin() as conn:
        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'), {"a": folded, "e": escrow_id}
        )
    pay_sol(sol, chain.escrow_account(escrow_id, "SOL"), 1_000_000_000)
    report = await sync_funding(app.runtime, chains)
    assert (
        report.funded == []
        and f"contractAddress {folded} is not the escrow address {real}" in report.problems[escrow_id]
    )


async def test_wallet_set_refuses_a_program_or_a_token_account_as_a_solana_payout_wallet(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    from spl.token.constants import TOKEN_PROGRAM_ID
    from spl.token.instructions import get_associated_token_address

    from github_app.escrow.wallets import NodeWalletChecker, WalletError
    from github_app.escrow.wallets import set_wallet as store_wallet

    checker = NodeWalletChecker(app.runtime.settings, solana_transport=LiteSvmTransport(sol.svm))
    client_ata = get_associated_token_address(sol.client.pubkey(), sol.mint)
    from spl.token.instructions import create_idempotent_associated_token_account

    client = sol.client.pubkey()
    sol.send(sol.client, [create_idempotent_associated_token_account(client, client, sol.mint)])
    email = f"{DEV}@example.com"
    refused = {
        str(TOKEN_PROGRAM_ID): r"is a program \(an executable account\)",
        str(client_ata): "is a token account",
        str(sol.mint): "owned by the Token program",
    }
    for address, reason in refused.items():
        async with app.runtime.sessionmaker() as session, session.begin():
            with pytest.raises(WalletError, match=reason):
                await store_wallet(session, email, "solana", address, checker)
    for address in (str(client), str(EXPERT)):  # a funded wallet, and one that has never been used
        async with app.runtime.sessionmaker() as session, session.begin():
            await store_wallet(session, email, "solana", address, checker)
    assert await market.rows(
        "SELECT address FROM wallet WHERE chain = 'solana' AND user_id = :u", u=market.users[DEV]
    ) == [(str(EXPERT),)]


async def test_a_refund_the_node_refuses_leaves_no_request_behind(app: App, market: Market, sol: SolanaEnv) -> None:
    """The client's recorded wallet cannot receive (a program id, set before wallets were checked): the
    node refuses the refund at preflight; the refund is refused with its error, and the release is free."""
    from spl.memo.constants import MEMO_PROGRAM_ID

    await set_wallet(market, CLIENT, "solana", str(MEMO_PROGRAM_ID))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=1_000_000_000)
    pay_sol(sol, chain.escrow_account(escrow_id, "SOL"), 1_000_000_000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    with pytest.raises(RefundRefused, match="the node refused the refund transaction"):
        await refund(app.runtime, chains, escrow_id, poll_seconds=0.01)
    assert await market.rows("SELECT refund_requested_at FROM escrow_chain_state") == [(None,)]
    [(state, error)] = await market.rows("SELECT state, error FROM escrow_chain_tx")
    assert state == "dropped" and error
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    assert await release_state(market) == ("released", None)
    assert lamports(sol, EXPERT) == 950_000_000


async def test_sol_dust_an_empty_client_wallet_could_not_hold_does_not_block_the_release(
    app: App, market: Market, sol: SolanaEnv
) -> None:
    """The client's recorded wallet has never been used, and a stranger sends 1,000 lamports: too few to
    open it (rent needs 890,880). They go to the treasury; the expert is paid."""
    from solders.keypair import Keypair

    await set_wallet(market, CLIENT, "solana", str(Keypair().pubkey()))
    chain = sol.chain()
    chains = Chains(backends={"solana": chain})
    escrow_id = await pending_escrow(app, market, chain, currency="SOL", amount=1_000_000_000)
    account = chain.escrow_account(escrow_id, "SOL")
    pay_sol(sol, account, 1_000_000_000)
    pay_sol(sol, account, 1_000)
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    await Releaser(app.runtime, chains, poll_seconds=0.01).run_until_idle()
    assert await release_state(market) == ("released", None)
    assert (lamports(sol, EXPERT), lamports(sol, sol.treasury)) == (950_000_000, 50_001_000)
