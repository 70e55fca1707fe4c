"""Escrow release on a real EVM (py-evm in-process, the compiled Escrow contract): a DONE story's
expert is paid exactly once, with exact balances, and what GitHub shows follows each state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.releases import Releaser
from github_app.outbox.sender import OutboxSender
from tests.chain.evm_env import TREASURY_KEY, EvmEnv, address, deploy_env, expert_key, in_process_web3
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.fake_github import FakeGitHub
from tests.harness import App
from tests.workflow import DEV, Market, seed_market

EXPERT = address(expert_key(1))
TREASURY = address(TREASURY_KEY)


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "polygon", EXPERT)
    yield m


@pytest.fixture
async def evm() -> EvmEnv:
    return await deploy_env(in_process_web3())


def releaser(app: App, evm: EvmEnv, **kw: Any) -> Releaser:
    chains = Chains(backends={"polygon": evm.chain()})
    return Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0, **kw)


async def check_summary(app: App, fake: FakeGitHub) -> str:
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    [run] = [r for r in fake.check_runs.values()]
    return str(run["output"]["summary"])


async def release_state(m: Market) -> tuple[Any, ...]:
    [row] = await m.rows("SELECT state, waiting_for, last_error, escrow_id FROM escrow_release_request")
    return row


@pytest.mark.parametrize("currency", ["USDC", "USDT", "ETH"])
async def test_done_waits_for_funding_then_pays_the_expert_exactly(
    app: App, market: Market, evm: EvmEnv, fake_github: FakeGitHub, currency: str
) -> None:
    m = market
    story_id = await done_story(app, m)
    r = releaser(app, evm)
    await r.run_until_idle()
    assert (await release_state(m))[:2] == ("pending", "waiting for funding (no escrow created yet)")
    assert "waiting for funding" in await check_summary(app, fake_github)

    amount = 1_234_567_891
    escrow_id = await create_escrow(
        m, story_id, contract_address=evm.escrow_address, amount=amount, currency=currency, fee_bps=250
    )
    await r.run_until_idle()
    assert (await release_state(m))[:2] == ("pending", "waiting for funding")
    fund_tx = await evm.fund(escrow_id, EXPERT, currency, amount, 250)
    report = await sync_funding(app.runtime, r.chains)
    assert report.funded == [escrow_id]
    row = await escrow_row(m, escrow_id)
    assert (row["status"], row["funding_tx"]) == ("FUNDED", fund_tx)

    await r.run_until_idle()
    fee = amount * 250 // 10_000
    assert await evm.balance(currency, EXPERT) == amount - fee
    assert await evm.balance(currency, TREASURY) == fee
    assert await evm.balance(currency, evm.escrow_address) == 0
    row = await escrow_row(m, escrow_id)
    assert row["status"] == "RELEASED" and row["release_tx"].startswith("0x") and row["released_at"] is not None
    assert await release_state(m) == ("released", None, None, escrow_id)
    assert await m.rows('SELECT status FROM "Opportunity" o JOIN story_opportunity so ON so.opportunity_id = o.id') == [
        ("COMPLETED",)
    ]
    [(meta,)] = await m.rows("""SELECT metadata FROM "StoryAuditLog" WHERE action = 'escrow_released'""")
    assert row["release_tx"] in str(meta)
    summary = await check_summary(app, fake_github)
    assert f"https://amoy.polygonscan.com/tx/{row['release_tx']}" in summary and "paid" in summary

    # The chain itself refuses a second release of the same escrow.
    with pytest.raises(Exception):  # noqa: B017 - the node's own revert type differs per transport
        await evm.chain().unsigned("release", escrow_id)
    await r.run_until_idle()
    assert await evm.balance(currency, EXPERT) == amount - fee
