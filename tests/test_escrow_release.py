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
from tests.chain.evm_env import CLIENT_KEY, TREASURY_KEY, EvmEnv, address, deploy_env, expert_key, in_process_web3
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.fake_github import FakeGitHub
from tests.harness import App
from tests.workflow import CLIENT, DEV, Market, seed_market

EXPERT = address(expert_key(1))
TREASURY = address(TREASURY_KEY)
CLIENT_ADDRESS = address(CLIENT_KEY)


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "polygon", EXPERT)
    await set_wallet(m, CLIENT, "polygon", CLIENT_ADDRESS)
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


class Crash(BaseException):
    """The process dies here: nothing after this point runs, no handler sees it."""


def crash_at(step: str) -> Any:
    def fault(at: str, _request_id: str) -> None:
        if at == step:
            raise Crash(step)

    return fault


async def expire_leases(m: Market) -> None:
    """The dead worker's lease runs out."""
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE escrow_release_request SET lease_expires_at = '2000-01-01 00:00:00'"))


async def funded_done_story(app: App, m: Market, evm: EvmEnv, amount: int = 10**6, fee_bps: int = 500) -> str:
    story_id = await done_story(app, m)
    escrow_id = await create_escrow(m, story_id, contract_address=evm.escrow_address, amount=amount, fee_bps=fee_bps)
    await evm.fund(escrow_id, EXPERT, "USDC", amount, fee_bps)
    assert (await sync_funding(app.runtime, Chains(backends={"polygon": evm.chain()}))).funded == [escrow_id]
    return escrow_id


@pytest.mark.parametrize("step", ["bound", "signed", "broadcast", "confirmed"])
async def test_a_crash_at_any_step_still_pays_exactly_once(
    app: App, market: Market, evm: EvmEnv, fake_github: FakeGitHub, step: str
) -> None:
    escrow_id = await funded_done_story(app, market, evm)
    with pytest.raises(Crash):
        await releaser(app, evm, fault=crash_at(step)).run_until_idle()
    signed = await market.rows("SELECT tx_hash, state FROM escrow_chain_tx")
    assert len(signed) == (0 if step == "bound" else 1)
    # Prisma readers never see a release hash on an escrow that is not RELEASED.
    assert (await escrow_row(market, escrow_id))["release_tx"] is None
    await expire_leases(market)
    await releaser(app, evm).run_until_idle()
    assert await evm.balance("USDC", EXPERT) == 950_000
    assert await evm.balance("USDC", TREASURY) == 50_000
    row = await escrow_row(market, escrow_id)
    assert row["status"] == "RELEASED"
    [(tx_hash, state)] = await market.rows("SELECT tx_hash, state FROM escrow_chain_tx")
    assert (tx_hash, state) == (row["release_tx"], "confirmed")
    assert (await release_state(market))[0] == "released"


async def test_two_workers_and_duplicate_merges_pay_once(
    app: App, market: Market, evm: EvmEnv, fake_github: FakeGitHub
) -> None:
    import asyncio

    story_id = await done_story(app, market, merges=2)  # the merge delivered twice, each processed
    merges = await market.scalar(
        "SELECT count(*) FROM webhook_inbox WHERE event = 'pull_request' AND action = 'closed' AND state = 'done'"
    )
    assert merges == 2
    escrow_id = await create_escrow(market, story_id, contract_address=evm.escrow_address, amount=10**6)
    await evm.fund(escrow_id, EXPERT, "USDC", 10**6, 500)
    assert (await sync_funding(app.runtime, Chains(backends={"polygon": evm.chain()}))).funded == [escrow_id]
    # Still one request: the second merge found the story DONE and changed nothing.
    assert await market.scalar("SELECT count(*) FROM escrow_release_request") == 1
    await asyncio.gather(releaser(app, evm).run_until_idle(), releaser(app, evm).run_until_idle())
    assert await evm.balance("USDC", EXPERT) == 950_000
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 1
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
    assert await market.scalar("SELECT count(*) FROM \"StoryAuditLog\" WHERE action = 'escrow_released'") == 1


@pytest.mark.parametrize(
    ("amount", "fee_bps"),
    [(1, 0), (1, 10_000), (1, 9_999), (10_000, 1), (9_999, 1), (2**256 - 1, 10_000), (2**256 - 1, 3_333)],
)
async def test_fee_edge_cases_pay_exactly(evm: EvmEnv, amount: int, fee_bps: int) -> None:
    from github_app.domain.escrow import fee_split

    escrow_id = f"edge-{amount}-{fee_bps}"
    await evm.fund(escrow_id, EXPERT, "USDC", amount, fee_bps)
    chain = evm.chain()
    signed = chain.sign(await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce())
    await chain.broadcast(signed)
    assert (await chain.outcome(signed)).succeeded
    expert, fee = fee_split(amount, fee_bps)
    assert (await evm.balance("USDC", EXPERT), await evm.balance("USDC", TREASURY)) == (expert, fee)
    assert int(await chain.contract.functions.feeOf(amount, fee_bps).call()) == fee


async def test_funding_that_differs_from_the_row_is_reported_never_accepted(
    app: App, market: Market, evm: EvmEnv
) -> None:
    story_id = await done_story(app, market)
    escrow_id = await create_escrow(market, story_id, contract_address=evm.escrow_address, amount=1000, fee_bps=500)
    await evm.fund(escrow_id, EXPERT, "USDC", 999, 100)  # less money, smaller fee
    report = await sync_funding(app.runtime, Chains(backends={"polygon": evm.chain()}))
    assert report.funded == []
    problem = report.problems[escrow_id]
    assert "amount on-chain 999 != 1000" in problem and "fee on-chain 100 bps != 500 bps" in problem
    assert (await escrow_row(market, escrow_id))["status"] == "PENDING"
    assert await market.scalar("SELECT problem FROM escrow_chain_state WHERE escrow_id = :e", e=escrow_id) == problem


async def test_a_chain_that_is_not_configured_leaves_the_release_pending(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    from github_app.db.enums import EscrowStatus

    story_id = await done_story(app, market)
    await create_escrow(market, story_id, contract_address="0x" + "11" * 20, amount=5, status=EscrowStatus.FUNDED)
    chains = Chains(problems={"polygon": "Polygon is not configured"})
    await Releaser(app.runtime, chains, waiting_retry_seconds=0).run_until_idle()
    assert (await release_state(market))[:2] == ("pending", "Polygon is not configured")
    assert "Polygon is not configured" in await check_summary(app, fake_github)


async def test_two_funded_escrows_are_refused_for_an_operator(
    app: App, market: Market, evm: EvmEnv, fake_github: FakeGitHub
) -> None:
    from github_app.db.enums import EscrowStatus

    story_id = await done_story(app, market)
    for _ in range(2):
        await create_escrow(market, story_id, contract_address=evm.escrow_address, amount=5, status=EscrowStatus.FUNDED)
    await releaser(app, evm).run_until_idle()
    state, _, error, _ = await release_state(market)
    assert state == "failed" and "2 funded escrows" in error and "operator decides" in error
    summary = await check_summary(app, fake_github)
    assert "failed" in summary and "bmad-app escrow retry" in summary
    assert await evm.balance("USDC", EXPERT) == 0


async def test_an_expert_without_a_wallet_is_a_permanent_failure(app: App, market: Market, evm: EvmEnv) -> None:
    from sqlalchemy import text

    escrow_id = await funded_done_story(app, market, evm)
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("DELETE FROM wallet"))
    await releaser(app, evm).run_until_idle()
    state, _, error, bound = await release_state(market)
    assert (state, bound) == ("failed", escrow_id) and "no Polygon wallet" in error
    assert (await escrow_row(market, escrow_id))["status"] == "FUNDED"


async def test_retry_after_the_operator_fixes_the_cause_pays_once(
    app: App, market: Market, evm: EvmEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    from argparse import Namespace

    from sqlalchemy import text

    from github_app.escrow.commands import _retry

    escrow_id = await funded_done_story(app, market, evm)
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("DELETE FROM wallet"))
    await releaser(app, evm).run_until_idle()
    assert (await release_state(market))[0] == "failed"
    await releaser(app, evm).run_until_idle()  # a failure stays failed: only an operator retries
    assert (await release_state(market))[0] == "failed"
    assert await _retry(app.runtime, Namespace(id="no-such-id")) == 1
    await set_wallet(market, DEV, "polygon", EXPERT)
    assert await _retry(app.runtime, Namespace(id=escrow_id)) == 0
    assert await _retry(app.runtime, Namespace(id=escrow_id)) == 1  # pending now: nothing to retry
    await releaser(app, evm).run_until_idle()
    assert await evm.balance("USDC", EXPERT) == 950_000
    assert (await release_state(market))[0] == "released"
    assert "queued again" in capsys.readouterr().out


async def test_a_recorded_payment_is_reconciled_even_if_the_wallet_changed_since(
    app: App, market: Market, evm: EvmEnv
) -> None:
    from sqlalchemy import text

    escrow_id = await funded_done_story(app, market, evm)
    with pytest.raises(Crash):
        await releaser(app, evm, fault=crash_at("signed")).run_until_idle()
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("DELETE FROM wallet"))
    await expire_leases(market)
    await releaser(app, evm).run_until_idle()
    # The signed transaction was already committed: it is sent and marked, not abandoned half-way.
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
    assert await evm.balance("USDC", EXPERT) == 950_000


async def test_an_escrow_named_at_done_is_checked_again_when_the_release_runs(
    app: App, market: Market, evm: EvmEnv
) -> None:
    from sqlalchemy import text

    from github_app.db.enums import EscrowStatus

    story_id = await done_story(app, market)
    first = await create_escrow(
        market, story_id, contract_address=evm.escrow_address, amount=5, status=EscrowStatus.FUNDED
    )
    await create_escrow(market, story_id, contract_address=evm.escrow_address, amount=5, status=EscrowStatus.FUNDED)
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE escrow_release_request SET escrow_id = :e"), {"e": first})
    await releaser(app, evm).run_until_idle()
    state, _, error, bound = await release_state(market)
    assert (state, bound) == ("failed", None) and "2 funded escrows" in error
    assert await evm.balance("USDC", EXPERT) == 0


async def test_a_release_on_chain_with_no_record_is_matched_from_the_contract_events(
    app: App, market: Market, evm: EvmEnv
) -> None:
    """Released with the arbiter key outside the app (an operator by hand): the release finds the
    transaction in the contract's `Released` events and marks it; nothing is sent again."""
    import asyncio

    escrow_id = await funded_done_story(app, market, evm)
    chain = evm.chain()
    by_hand = chain.sign(await chain.unsigned("release", escrow_id, client=CLIENT_ADDRESS), await chain.pending_nonce())
    await chain.broadcast(by_hand)
    while not (await chain.outcome(by_hand)).landed:
        await asyncio.sleep(0.01)
    await releaser(app, evm).run_until_idle()
    assert (await evm.balance("USDC", EXPERT), await evm.balance("USDC", TREASURY)) == (950_000, 50_000)
    row = await escrow_row(market, escrow_id)
    assert (row["status"], row["release_tx"]) == ("RELEASED", by_hand.tx_hash)
    assert (await release_state(market))[0] == "released"
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 0
