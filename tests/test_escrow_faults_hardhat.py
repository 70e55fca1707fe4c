"""Polygon escrow faults over the production transport (`AsyncHTTPProvider`) against a hardhat node, some
through a JSON-RPC proxy that fails the way hosted providers do: a refund whose broadcast fails, a stuck
release replaced at its nonce, log searches refused over long ranges, a node of another chain, a
transaction mined between two reads, confirmations above 1, and the operator's rescue."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from github_app.chains.evm import EvmChain
from github_app.chains.rpc_http import node_web3
from github_app.demo.evm_env import ARBITER_KEY, CLIENT_KEY, DEPLOYER_KEY, EvmEnv, address, key
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.releases import Releaser
from tests import test_escrow_external
from tests.chain.faults import RpcProxy, add_hook
from tests.chain.market import create_escrow, done_story, escrow_row
from tests.harness import App
from tests.test_escrow_external import CLIENT_ADDRESS, EXPERT, ROOT, chain_env
from tests.test_escrow_faults_evm import replaced
from tests.workflow import Market

pytestmark = pytest.mark.external_chain

OPERATOR = address(key(78))

# The same market (the developer's and the client's wallets set) and a fresh contract for each test.
market = test_escrow_external.market
node = test_escrow_external.node


@pytest.fixture
async def proxy(hardhat_url: str) -> AsyncIterator[RpcProxy]:
    p = RpcProxy(hardhat_url)
    await p.start()
    yield p
    await p.close()


async def bmad_app(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The command line, without blocking this event loop (the proxy it talks to runs in it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "github_app",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return int(process.returncode or 0), out.decode(), err.decode()


def chain_over(url: str, node: EvmEnv, **kw: Any) -> EvmChain:
    return EvmChain(
        node_web3(url),
        contract_address=node.escrow_address,
        arbiter_key=ARBITER_KEY,
        chain_id=kw.pop("chain_id", node.chain_id),
        confirmations=kw.pop("confirmations", 1),
        tokens=node.tokens,
        **kw,
    )


async def funded(app: App, m: Market, node: EvmEnv, number: int, amount: int = 1000) -> str:
    story_id = await done_story(app, m, number=number)
    escrow_id = await create_escrow(m, story_id, contract_address=node.escrow_address, amount=amount)
    await node.fund(escrow_id, EXPERT, "USDC", amount, 500)
    return escrow_id


async def test_a_refund_whose_broadcast_fails_is_told_in_one_sentence_and_sent_by_the_worker(
    app: App, market: Market, node: EvmEnv, proxy: RpcProxy, db_url: str
) -> None:
    refunded = await funded(app, market, node, 3, amount=777)
    paid = await funded(app, market, node, 4, amount=1000)
    env = chain_env(proxy.url, node, db_url)
    assert (await bmad_app(env, "escrow", "sync"))[0] == 0
    client_before = await node.balance("USDC", CLIENT_ADDRESS)

    proxy.rules.down = {"eth_sendRawTransaction"}  # the provider fails while the refund is sent
    code, out, err = await bmad_app(env, "escrow", "refund", refunded)
    assert code == 1 and out == ""
    assert "Traceback" not in err and err.count("\n") == 1 and proxy.url not in err
    assert "signed and recorded" in err and "the worker sends it again" in err
    assert (await escrow_row(market, refunded))["status"] == "FUNDED"

    proxy.rules.down = set()
    # The worker, as its own process: the refund first (its nonce comes first), then the release.
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.escrow_worker_process", env=env, cwd=ROOT
    )
    assert await asyncio.wait_for(worker.wait(), timeout=120) == 0
    assert (await escrow_row(market, refunded))["status"] == "REFUNDED"
    assert await node.balance("USDC", CLIENT_ADDRESS) == client_before + 777
    assert (await escrow_row(market, paid))["status"] == "RELEASED"
    assert await node.balance("USDC", EXPERT) == 950
    code, out, _ = await bmad_app(env, "escrow", "refund", refunded)
    assert code == 0 and "REFUNDED" in out  # the command now reports the refund the worker sent


async def test_a_stuck_release_is_replaced_on_the_node_and_the_replacement_pays(
    app: App, market: Market, node: EvmEnv, hardhat_url: str
) -> None:
    escrow_id = await funded(app, market, node, 3)
    chain = chain_over(hardhat_url, node, replace_after=0.1)
    chains = Chains(backends={"polygon": chain})
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    await node.hold_blocks()
    try:
        task = asyncio.create_task(Releaser(app.runtime, chains, poll_seconds=0.02, lease_seconds=5).run_until_idle())
        await replaced(market, task)
    finally:
        await node.resume_blocks()
    await task
    await chain.close()
    rows = await market.rows("SELECT tx_hash, state, replaces FROM escrow_chain_tx ORDER BY created_at")
    landed = [r for r in rows if r[1] == "confirmed"]
    assert len(landed) == 1 and landed[0][2] is not None  # the node took the replacement (>= 10 % more)
    assert {r[1] for r in rows if r is not landed[0]} == {"dropped"}
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", landed[0][0])
    assert await node.balance("USDC", EXPERT) == 950


async def test_a_provider_refusing_long_log_searches_does_not_stall_reconciliation(
    app: App, market: Market, node: EvmEnv, proxy: RpcProxy
) -> None:
    proxy.rules.max_log_range = 50
    await node.mine(400)
    escrow_id = await funded(app, market, node, 3)
    chain = chain_over(proxy.url, node)
    chains = Chains(backends={"polygon": chain})
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    assert (await escrow_row(market, escrow_id))["funding_tx"] is not None
    await node.mine(300)
    by_hand = chain.sign(await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce())
    await chain.broadcast(by_hand)
    while not (await chain.outcome(by_hand)).landed:
        await asyncio.sleep(0.02)
    await Releaser(app.runtime, chains, poll_seconds=0.02).run_until_idle()
    await chain.close()
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", by_hand.tx_hash)
    assert proxy.rules.refused_log_queries >= 1


async def test_a_worker_refuses_a_node_of_another_chain(
    app: App, market: Market, node: EvmEnv, hardhat_url: str, db_url: str
) -> None:
    escrow_id = await funded(app, market, node, 3)
    env = {**chain_env(hardhat_url, node, db_url), "POLYGON_CHAIN_ID": "137"}
    code, out, _ = await bmad_app(env, "escrow", "sync")
    assert f"{escrow_id}: skipped: refused: the Polygon RPC endpoint serves chain {node.chain_id}" in out
    assert (await escrow_row(market, escrow_id))["status"] == "PENDING"
    # Accepted earlier (when the configuration was right): the worker still signs nothing for this node.
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE \"Escrow\" SET status = 'FUNDED'"))
    wrong = chain_over(hardhat_url, node, chain_id=137)
    await Releaser(app.runtime, Chains(backends={"polygon": wrong}), waiting_retry_seconds=60).run_until_idle()
    await wrong.close()
    [(state, waiting)] = await market.rows("SELECT state, waiting_for FROM escrow_release_request")
    assert state == "pending" and "not POLYGON_CHAIN_ID 137" in waiting
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 0
    assert await node.balance("USDC", EXPERT) == 0


async def test_a_transaction_mined_between_the_reads_is_not_dropped_over_http(
    app: App, market: Market, node: EvmEnv, hardhat_url: str
) -> None:
    escrow_id = await funded(app, market, node, 3)
    chain = chain_over(hardhat_url, node)
    await node.hold_blocks()
    try:
        signed = chain.sign(
            await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce()
        )
        await chain.broadcast(signed)
        armed = [True]

        async def mine_now(_params: Any) -> None:
            if armed:
                armed.clear()
                await node.mine(1)

        add_hook(chain.w3, "eth_getTransactionCount", mine_now)
        outcome = await chain.outcome(signed)
    finally:
        await node.resume_blocks()
    await chain.close()
    assert not armed and outcome.landed and outcome.succeeded and not outcome.never_lands


async def test_funding_and_release_wait_for_their_confirmations_on_the_node(
    app: App, market: Market, node: EvmEnv, hardhat_url: str
) -> None:
    story_id = await done_story(app, market)
    escrow_id = await create_escrow(market, story_id, contract_address=node.escrow_address, amount=1000)
    fund_tx = await node.fund(escrow_id, EXPERT, "USDC", 1000, 500)
    await node.hold_blocks()
    try:
        fund_block = (await node.w3.eth.get_transaction_receipt(fund_tx))["blockNumber"]  # type: ignore[arg-type]
        depth = int(await node.w3.eth.block_number) - fund_block + 1
        # Two blocks more than the funding has now (at least 3, as production's 12 is more than 1).
        chain = chain_over(hardhat_url, node, confirmations=depth + 2)
        chains = Chains(backends={"polygon": chain})
        assert (await sync_funding(app.runtime, chains)).funded == []
        await node.mine(1)
        assert (await sync_funding(app.runtime, chains)).funded == []
        await node.mine(1)
        assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
        assert (await escrow_row(market, escrow_id))["funding_tx"] == fund_tx
    finally:
        await node.resume_blocks()
    await Releaser(app.runtime, chains, poll_seconds=0.02).run_until_idle()
    await chain.close()
    row = await escrow_row(market, escrow_id)
    receipt = await node.w3.eth.get_transaction_receipt(row["release_tx"])
    assert row["status"] == "RELEASED"
    assert int(await node.w3.eth.block_number) >= receipt["blockNumber"] + depth + 1


async def test_the_operator_rescues_tokens_sent_outside_fund(
    app: App, market: Market, node: EvmEnv, hardhat_url: str, db_url: str
) -> None:
    escrow_id = await funded(app, market, node, 3, amount=1000)
    env = chain_env(hardhat_url, node, db_url)
    assert (await bmad_app(env, "escrow", "sync"))[0] == 0
    code, _, err = await bmad_app(env, "escrow", "rescue", "--chain", "polygon", "USDC", OPERATOR)
    assert code == 1 and "nothing to rescue" in err
    await node.send(DEPLOYER_KEY, node.token_contracts["USDC"].functions.mint(node.escrow_address, 55))
    code, out, err = await bmad_app(env, "escrow", "rescue", "--chain", "polygon", "USDC", OPERATOR)
    assert code == 0, err
    assert out.startswith(f"rescued 55 of {node.tokens['USDC']} to {OPERATOR}: 0x")
    assert await node.balance("USDC", OPERATOR) == 55 and await node.balance("USDC", node.escrow_address) == 1000
    code, _, err = await bmad_app(env, "escrow", "rescue", "--chain", "polygon", "USDC", OPERATOR.lower())
    assert code == 1 and "EIP-55" in err
    assert ARBITER_KEY not in out + err and CLIENT_KEY not in out + err
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"
