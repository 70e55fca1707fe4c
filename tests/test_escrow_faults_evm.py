"""Polygon escrow faults on a real EVM (py-evm in-process, the compiled contract): a stranger cannot block
or stand in for the client's funding, funding and releases count at their confirmations, a stuck release
is replaced and whichever transaction lands is the payment, a recorded refund that was never sent is sent
by the worker, log searches survive a provider that refuses long ranges, a node of another chain is
refused, and tokens sent outside `fund` can be rescued without touching an escrow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_utils import keccak

from github_app.chains.addresses import evm_funding
from github_app.chains.evm import EvmChain
from github_app.demo.evm_env import (
    ARBITER_KEY,
    CLIENT_KEY,
    DEPLOYER_KEY,
    TREASURY_KEY,
    EvmEnv,
    address,
    deploy_env,
    expert_key,
    give_gas,
    in_process_web3,
    key,
)
from github_app.demo.fake_github import FakeGitHub
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.refunds import RefundRefused, refund
from github_app.escrow.releases import Releaser
from tests.chain.faults import Rules, add_hook, refuse_long_log_ranges
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.harness import App
from tests.workflow import CLIENT, DEV, Market, seed_market

EXPERT = address(expert_key(1))
OTHER_EXPERT = address(expert_key(2))
TREASURY = address(TREASURY_KEY)
CLIENT_ADDRESS = address(CLIENT_KEY)
STRANGER_KEY = key(66)
OPERATOR = address(key(77))
NOT_FUNDED = keccak(text="NotFunded()")[:4]


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "polygon", EXPERT)
    await set_wallet(m, CLIENT, "polygon", CLIENT_ADDRESS)
    yield m


@pytest.fixture
async def evm() -> EvmEnv:
    env = await deploy_env(in_process_web3())
    await give_gas(env.w3, STRANGER_KEY)
    return env


def chains_of(chain: EvmChain) -> Chains:
    return Chains(backends={"polygon": chain})


def releaser(app: App, chain: EvmChain, **kw: Any) -> Releaser:
    return Releaser(app.runtime, chains_of(chain), poll_seconds=0.01, waiting_retry_seconds=0, **kw)


async def pending_escrow(app: App, m: Market, evm: EvmEnv, amount: int = 10**6, number: int = 3) -> str:
    story_id = await done_story(app, m, number=number)
    return await create_escrow(m, story_id, contract_address=evm.escrow_address, amount=amount, fee_bps=500)


async def funded_escrow(app: App, m: Market, evm: EvmEnv, amount: int = 10**6, number: int = 3) -> str:
    escrow_id = await pending_escrow(app, m, evm, amount, number)
    await evm.fund(escrow_id, EXPERT, "USDC", amount, 500)
    assert (await sync_funding(app.runtime, chains_of(evm.chain()))).funded == [escrow_id]
    return escrow_id


async def until_released(r: Releaser, m: Market, escrow_id: str, passes: int = 500) -> None:
    """Run the worker until the escrow is RELEASED (a rescheduled request is due again a poll later)."""
    for _ in range(passes):
        if (await escrow_row(m, escrow_id))["status"] == "RELEASED":
            return
        await r.run_once()
    raise AssertionError(f"escrow {escrow_id} not released after {passes} passes")


async def replaced(m: Market, worker: asyncio.Task[None], within: float = 60.0) -> None:
    """Wait until a second transaction (the replacement) is recorded; the worker is stopped if it never is."""

    async def recorded() -> None:
        while await m.scalar("SELECT count(*) FROM escrow_chain_tx") < 2:
            assert not worker.done()
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(recorded(), within)
    except BaseException:
        worker.cancel()
        raise


async def release_row(m: Market) -> tuple[Any, ...]:
    [row] = await m.rows("SELECT state, waiting_for, last_error FROM escrow_release_request")
    return row


async def test_the_funding_instructions_name_the_id_the_contract_stores(evm: EvmEnv) -> None:
    funding = evm_funding(
        "row-42",
        contract=evm.escrow_address,
        client=CLIENT_ADDRESS,
        expert=EXPERT,
        token=evm.tokens["USDC"],
        amount=5000,
        fee_bps=250,
    )
    contract = evm.chain().contract
    assert funding.ref == keccak(text="row-42")
    assert funding.escrow_id == await contract.functions.escrowIdOf(CLIENT_ADDRESS, funding.ref).call()
    assert funding.fund_call == (
        f"{evm.escrow_address}.fund(0x{funding.ref.hex()}, {EXPERT}, {evm.tokens['USDC']}, 5000, 250)"
    )
    assert CLIENT_ADDRESS in funding.instructions() and funding.approve_call in funding.instructions()
    await evm.fund("row-42", EXPERT, "USDC", 5000, 250)
    client, expert, token, amount, fee, status = await contract.functions.escrows(funding.escrow_id).call()
    assert (client, expert, token, amount, fee, status) == (CLIENT_ADDRESS, EXPERT, evm.tokens["USDC"], 5000, 250, 1)


async def test_a_strangers_funding_of_the_same_ref_neither_blocks_nor_counts(
    app: App, market: Market, evm: EvmEnv
) -> None:
    escrow_id = await pending_escrow(app, market, evm, amount=1000)
    # A stranger funds the escrow's ref first, with the right expert, token, amount and fee.
    await evm.fund(escrow_id, EXPERT, "USDC", 1000, 500, client_key=STRANGER_KEY)
    report = await sync_funding(app.runtime, chains_of(evm.chain()))
    assert report.funded == [] and escrow_id in report.not_funded
    assert (await escrow_row(market, escrow_id))["status"] == "PENDING"
    # The client's own funding still goes through, and it is the one accepted and paid out.
    await evm.fund(escrow_id, EXPERT, "USDC", 1000, 500)
    assert (await sync_funding(app.runtime, chains_of(evm.chain()))).funded == [escrow_id]
    assert await market.scalar("SELECT funder FROM escrow_chain_state WHERE escrow_id = :e", e=escrow_id) == (
        CLIENT_ADDRESS
    )
    await releaser(app, evm.chain()).run_until_idle()
    assert await evm.balance("USDC", EXPERT) == 950
    assert await evm.balance("USDC", evm.escrow_address) == 1000  # the stranger's escrow, untouched


async def test_funding_from_a_client_without_a_wallet_is_not_accepted(app: App, market: Market, evm: EvmEnv) -> None:
    from sqlalchemy import text

    escrow_id = await pending_escrow(app, market, evm, amount=1000)
    await evm.fund(escrow_id, EXPERT, "USDC", 1000, 500)
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("DELETE FROM wallet WHERE user_id = :u"), {"u": market.users[CLIENT]})
    report = await sync_funding(app.runtime, chains_of(evm.chain()))
    assert "client has no Polygon wallet" in report.problems[escrow_id]
    assert (await escrow_row(market, escrow_id))["status"] == "PENDING"


@pytest.mark.parametrize("wrong", ["expert", "token", "row contract", "other contract"])
async def test_funding_that_names_another_expert_token_or_contract_is_refused(
    app: App, market: Market, evm: EvmEnv, wrong: str
) -> None:
    from sqlalchemy import text

    escrow_id = await pending_escrow(app, market, evm, amount=1000)
    if wrong == "expert":
        await evm.fund(escrow_id, OTHER_EXPERT, "USDC", 1000, 500)
    elif wrong == "token":
        await evm.fund(escrow_id, EXPERT, "ETH", 1000, 500)  # the row says USDC
    elif wrong == "row contract":
        await evm.fund(escrow_id, EXPERT, "USDC", 1000, 500)
        async with market.runtime.engine.begin() as conn:
            await conn.execute(text('UPDATE "Escrow" SET "contractAddress" = :a'), {"a": "0x" + "12" * 20})
    else:  # the client funds a look-alike contract, not the configured one
        other = await deploy_env(evm.w3)
        await other.fund(escrow_id, EXPERT, "USDC", 1000, 500)
    report = await sync_funding(app.runtime, chains_of(evm.chain()))
    assert report.funded == []
    expected = {
        "expert": f"expert wallet on-chain {OTHER_EXPERT} != {EXPERT}",
        "token": f"token on-chain {evm.tokens['ETH']} != {evm.tokens['USDC']}",
        "row contract": f"is not the escrow address {evm.escrow_address}",
    }.get(wrong)
    if expected is None:
        assert escrow_id in report.not_funded
    else:
        assert expected in report.problems[escrow_id]
    assert (await escrow_row(market, escrow_id))["status"] == "PENDING"
    await releaser(app, evm.chain()).run_once()
    assert (await release_row(market))[:2] == ("pending", "waiting for funding")
    assert await evm.balance("USDC", EXPERT) == 0 and await evm.balance("ETH", EXPERT) == 0


async def test_funding_and_releases_count_at_the_configured_confirmations(
    app: App, market: Market, evm: EvmEnv
) -> None:
    """Production waits 12 blocks; here 3: nothing counts at the chain head."""
    chain = evm.chain(confirmations=3)
    escrow_id = await pending_escrow(app, market, evm, amount=1000)
    await evm.fund(escrow_id, EXPERT, "USDC", 1000, 500)
    assert (await sync_funding(app.runtime, chains_of(chain))).funded == []  # 1 block: at the head only
    await evm.mine(1)
    assert (await sync_funding(app.runtime, chains_of(chain))).funded == []  # 2 blocks
    await evm.mine(1)
    assert (await sync_funding(app.runtime, chains_of(chain))).funded == [escrow_id]
    fund_block = (await evm.w3.eth.get_transaction_receipt((await escrow_row(market, escrow_id))["funding_tx"]))[
        "blockNumber"
    ]
    assert await market.scalar("SELECT watch_from_block FROM escrow_chain_state") == fund_block

    # The release is mined at once, but it is paid (RELEASED) only with 3 blocks on it.
    worker = asyncio.create_task(releaser(app, chain, lease_seconds=120).run_once())

    async def mined() -> None:
        while await evm.balance("USDC", EXPERT) != 950:
            assert not worker.done()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(mined(), 60)
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"
    assert (await release_row(market))[0] == "releasing"
    await evm.mine(2)
    await asyncio.wait_for(worker, 60)
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


async def test_a_release_found_through_the_events_counts_at_the_configured_confirmations(
    app: App, market: Market, evm: EvmEnv
) -> None:
    escrow_id = await funded_escrow(app, market, evm)
    chain = evm.chain(confirmations=3)
    by_hand = chain.sign(await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce())
    await chain.broadcast(by_hand)
    r = releaser(app, chain)
    await r.run_once()
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"  # found, 1 block: not yet
    await evm.mine(2)
    await until_released(r, market, escrow_id)
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", by_hand.tx_hash)


async def test_a_transaction_mined_between_the_nonce_and_the_receipt_reads_is_not_dropped(
    app: App, market: Market, evm: EvmEnv
) -> None:
    escrow_id = await funded_escrow(app, market, evm)
    chain = evm.chain()
    await evm.hold_blocks()
    signed = chain.sign(await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce())
    await chain.broadcast(signed)
    armed = [True]

    async def mine_now(_params: Any) -> None:
        # The block that carries it is made while the app asks for the signer's nonce.
        if armed:
            armed.clear()
            await evm.mine(1)

    add_hook(evm.w3, "eth_getTransactionCount", mine_now)
    outcome = await chain.outcome(signed)
    assert not armed  # the block was made during the reads
    assert outcome.landed and outcome.succeeded and not outcome.never_lands
    await evm.resume_blocks()


async def test_a_stuck_release_is_replaced_with_a_higher_fee_and_the_replacement_pays(
    app: App, market: Market, evm: EvmEnv
) -> None:
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    escrow_id = await funded_escrow(app, market, evm)
    await evm.hold_blocks()  # nothing is mined: the release is stuck in the pool
    chain = evm.chain(replace_after=0.05)
    task = asyncio.create_task(releaser(app, chain, lease_seconds=2).run_until_idle())
    await replaced(market, task)
    await evm.resume_blocks()
    await task
    rows = await market.rows("SELECT tx_hash, nonce, state, replaces, raw_tx FROM escrow_chain_tx ORDER BY created_at")
    assert len({r[1] for r in rows}) == 1  # one nonce
    first, second = rows[0], rows[1]
    assert second[3] == first[0]
    old = TypedTransaction.from_bytes(HexBytes(first[4])).as_dict()
    new = TypedTransaction.from_bytes(HexBytes(second[4])).as_dict()
    assert new["maxFeePerGas"] * 10 >= old["maxFeePerGas"] * 11
    assert new["maxPriorityFeePerGas"] * 10 >= old["maxPriorityFeePerGas"] * 11
    landed = [r for r in rows if r[2] == "confirmed"]
    assert len(landed) == 1 and all(r[2] == "dropped" for r in rows if r not in landed)
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", landed[0][0])
    assert await evm.balance("USDC", EXPERT) == 950_000


async def test_when_the_replaced_transaction_lands_it_is_the_payment(app: App, market: Market, evm: EvmEnv) -> None:
    """The replacement is recorded, the worker dies before sending it, and the original is mined."""
    from tests.test_escrow_release import Crash, crash_at, expire_leases

    escrow_id = await funded_escrow(app, market, evm)
    await evm.hold_blocks()
    chain = evm.chain(replace_after=0.0)
    with pytest.raises(Crash):
        await releaser(app, chain, fault=crash_at("replaced")).run_until_idle()
    [(original,)] = await market.rows("SELECT tx_hash FROM escrow_chain_tx WHERE replaces IS NULL")
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 2
    await evm.mine(1)  # the original, the only one the node has
    await evm.resume_blocks()
    await expire_leases(market)
    await releaser(app, evm.chain()).run_until_idle()
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", original)
    assert sorted(await market.rows("SELECT state FROM escrow_chain_tx")) == [("confirmed",), ("dropped",)]
    assert await evm.balance("USDC", EXPERT) == 950_000


async def test_a_refund_that_was_never_sent_is_sent_by_the_worker_and_later_releases_go_out(
    app: App, market: Market, evm: EvmEnv
) -> None:
    refunded = await funded_escrow(app, market, evm, amount=777, number=3)
    paid = await funded_escrow_second(app, market, evm)
    client_before = await evm.balance("USDC", CLIENT_ADDRESS)

    def node_lost(step: str, _escrow: str) -> None:
        if step == "signed":
            raise ConnectionError("http://127.0.0.1:1/secret-api-key refused")

    with pytest.raises(RefundRefused) as refused:
        await refund(app.runtime, chains_of(evm.chain()), refunded, poll_seconds=0.01, fault=node_lost)
    message = str(refused.value)
    assert "signed and recorded" in message and "the worker sends it again" in message
    assert "secret-api-key" not in message and "\n" not in message
    [(refund_nonce,)] = await market.rows("SELECT nonce FROM escrow_chain_tx WHERE kind = 'refund'")

    # The next release takes the nonce after the refund's: only the refund, sent by the worker, lets it in.
    await releaser(app, evm.chain(), lease_seconds=5).run_until_idle()
    assert (await escrow_row(market, refunded))["status"] == "REFUNDED"
    assert await evm.balance("USDC", CLIENT_ADDRESS) == client_before + 777
    row = await escrow_row(market, paid)
    assert row["status"] == "RELEASED"
    assert await market.scalar("SELECT nonce FROM escrow_chain_tx WHERE kind = 'release'") == refund_nonce + 1
    assert await market.rows("SELECT state FROM escrow_chain_tx ORDER BY nonce") == [("confirmed",), ("confirmed",)]


async def test_a_stuck_refund_is_replaced_with_a_higher_fee_and_the_client_is_refunded_once(
    app: App, market: Market, evm: EvmEnv
) -> None:
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    from github_app.escrow.resend import resend_unsent

    escrow_id = await funded_escrow(app, market, evm, amount=777)
    client_before = await evm.balance("USDC", CLIENT_ADDRESS)

    def node_lost(step: str, _escrow: str) -> None:
        if step == "signed":
            raise ConnectionError("node went away")

    with pytest.raises(RefundRefused):
        await refund(app.runtime, chains_of(evm.chain()), escrow_id, poll_seconds=0.01, fault=node_lost)
    await evm.hold_blocks()  # a congested chain: what is sent waits in the pool
    patient = chains_of(evm.chain(replace_after=3600))
    assert (await resend_unsent(app.runtime, patient)).replaced == {}  # sent again, not old enough to replace
    stuck = chains_of(evm.chain(replace_after=0))
    report = await resend_unsent(app.runtime, stuck)
    [(original, replacement)] = report.replaced.items()
    await evm.resume_blocks()
    await evm.mine(1)
    await resend_unsent(app.runtime, chains_of(evm.chain()))

    rows = await market.rows(
        "SELECT tx_hash, nonce, state, replaces, raw_tx FROM escrow_chain_tx WHERE kind = 'refund' ORDER BY created_at"
    )
    assert [(r[0], r[3]) for r in rows] == [(original, None), (replacement, original)]
    assert rows[0][1] == rows[1][1]  # one nonce
    old = TypedTransaction.from_bytes(HexBytes(rows[0][4])).as_dict()
    new = TypedTransaction.from_bytes(HexBytes(rows[1][4])).as_dict()
    assert new["maxFeePerGas"] * 10 >= old["maxFeePerGas"] * 11
    assert new["maxPriorityFeePerGas"] * 10 >= old["maxPriorityFeePerGas"] * 11
    assert sorted(r[2] for r in rows) == ["confirmed", "dropped"]
    [landed] = [r[0] for r in rows if r[2] == "confirmed"]
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"
    assert (
        await market.scalar("SELECT refund_tx_hash FROM escrow_chain_state WHERE escrow_id = :e", e=escrow_id) == landed
    )
    assert await evm.balance("USDC", CLIENT_ADDRESS) == client_before + 777


async def funded_escrow_second(app: App, m: Market, evm: EvmEnv) -> str:
    """A second story and escrow, released by the worker (the first one is being refunded)."""
    from tests.chain.market import done_story as done

    story_id = await done(app, m, number=4)
    escrow_id = await create_escrow(m, story_id, contract_address=evm.escrow_address, amount=2000, fee_bps=500)
    await evm.fund(escrow_id, EXPERT, "USDC", 2000, 500)
    assert escrow_id in (await sync_funding(app.runtime, chains_of(evm.chain()))).funded
    return escrow_id


async def test_log_searches_start_at_the_funding_and_survive_a_provider_that_refuses_long_ranges(
    app: App, market: Market, evm: EvmEnv
) -> None:
    rules = Rules(max_log_range=100)
    refuse_long_log_ranges(evm.w3, rules)
    await evm.mine(300)  # a chain longer than the provider searches at once
    escrow_id = await pending_escrow(app, market, evm)
    fund_tx = await evm.fund(escrow_id, EXPERT, "USDC", 10**6, 500)
    assert (await sync_funding(app.runtime, chains_of(evm.chain()))).funded == [escrow_id]
    assert (await escrow_row(market, escrow_id))["funding_tx"] == fund_tx
    watch = await market.scalar("SELECT watch_from_block FROM escrow_chain_state")
    await evm.mine(250)
    chain = evm.chain()
    by_hand = chain.sign(await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce())
    await chain.broadcast(by_hand)
    before = len(rules.log_queries)
    await releaser(app, chain).run_until_idle()
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", by_hand.tx_hash)
    assert rules.refused_log_queries >= 1
    assert all(lo >= watch for lo, _ in rules.log_queries[before:])  # searched from the funding on
    assert all(hi - lo + 1 <= 2000 for lo, hi in rules.log_queries)  # bounded chunks, never 0..head at once


async def test_a_node_of_another_chain_is_refused_and_nothing_is_read_or_signed(
    app: App, market: Market, evm: EvmEnv, fake_github: FakeGitHub
) -> None:
    escrow_id = await pending_escrow(app, market, evm, amount=1000)
    await evm.fund(escrow_id, EXPERT, "USDC", 1000, 500)
    wrong = EvmChain(
        evm.w3,
        contract_address=evm.escrow_address,
        arbiter_key=ARBITER_KEY,
        chain_id=137,  # configured for Polygon mainnet; the node is a test chain
        confirmations=1,
        tokens=evm.tokens,
    )
    chains = chains_of(wrong)
    report = await sync_funding(app.runtime, chains)
    assert report.funded == [] and "serves chain" in report.not_configured[escrow_id]
    from sqlalchemy import text

    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE \"Escrow\" SET status = 'FUNDED'"))
    await Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=60).run_until_idle()
    state, waiting, _ = await release_row(market)
    assert state == "pending" and f"serves chain {evm.chain_id}, not POLYGON_CHAIN_ID 137" in waiting
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 0
    assert await evm.balance("USDC", EXPERT) == 0


async def test_rescue_sends_only_what_no_escrow_holds(app: App, market: Market, evm: EvmEnv) -> None:
    from github_app.escrow.rescue import RescueRefused, rescue

    escrow_id = await funded_escrow(app, market, evm, amount=1000)
    chains = chains_of(evm.chain())
    with pytest.raises(RescueRefused, match="nothing to rescue"):
        await rescue(app.runtime, chains, "USDC", OPERATOR, poll_seconds=0.01)
    # Someone transfers tokens straight to the contract, outside `fund`.
    await evm.send(DEPLOYER_KEY, evm.token_contracts["USDC"].functions.mint(evm.escrow_address, 321))
    result = await rescue(app.runtime, chains, "USDC", OPERATOR, poll_seconds=0.01)
    assert (result.amount, await evm.balance("USDC", OPERATOR)) == (321, 321)
    assert await evm.balance("USDC", evm.escrow_address) == 1000
    assert await market.rows("SELECT kind, escrow_id, state FROM escrow_chain_tx") == [("rescue", None, "confirmed")]
    # Only the arbiter may rescue.
    contract = evm.chain().contract
    with pytest.raises(Exception) as err:  # noqa: PT011 - the revert's selector is checked below
        await contract.functions.rescue(evm.tokens["USDC"], OPERATOR).estimate_gas({"from": CLIENT_ADDRESS})
    assert keccak(text="NotArbiter()")[:4] in revert_data(err.value)
    # The escrow's money is still all there for its release.
    await releaser(app, evm.chain()).run_until_idle()
    assert (await evm.balance("USDC", EXPERT), await evm.balance("USDC", TREASURY)) == (950, 50)
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


def revert_data(exc: BaseException) -> bytes:
    """The revert data of a failed call, as py-evm (eth-tester) or a JSON-RPC node reports it."""
    import ast

    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    text = str(exc)
    if "execution reverted: b" in text:
        return bytes(ast.literal_eval(text.split("execution reverted: ", 1)[1]))
    return b""
