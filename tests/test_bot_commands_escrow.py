"""Money commands on a real EVM (py-evm in-process, the compiled Escrow contract): `/bmad refund` goes
through the operator's refund guard and `refund()`, never beside a release; `/bmad escrow` says how to
fund a pending escrow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from github_app.db.enums import EscrowStatus
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.releases import Releaser
from github_app.escrow.requested_refunds import RequestedRefunds
from tests.chain.evm_env import CLIENT_KEY, EvmEnv, address, deploy_env, expert_key, in_process_web3
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.comments import Comments
from tests.fake_github import FakeGitHub
from tests.harness import App
from tests.test_bot_commands import reactions, reply, say, story
from tests.workflow import CLIENT, DEV, PM, Market, seed_market

EXPERT = address(expert_key(1))
CLIENT_ADDRESS = address(CLIENT_KEY)


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "polygon", EXPERT)
    await set_wallet(m, CLIENT, "polygon", CLIENT_ADDRESS)  # Polygon keys an escrow by its funder
    yield m


@pytest.fixture
def comments(fake_github: FakeGitHub) -> Comments:
    return Comments(fake_github)


@pytest.fixture
async def evm() -> EvmEnv:
    return await deploy_env(in_process_web3())


def chains(evm: EvmEnv) -> Chains:
    return Chains(backends={"polygon": evm.chain()})


async def funded_story_in_progress(app: App, m: Market, comments: Comments, evm: EvmEnv) -> str:
    """Story 1.3 validated, won by DEV, its escrow funded by the client: not DONE."""
    from tests.workflow import STORY_PATH, story_file

    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await say(app, comments.created("/bmad validate 1.3 score=9", PM))
    row = await story(m)
    await m.accept_bid(row["id"], DEV)
    escrow_id = await create_escrow(m, row["id"], contract_address=evm.escrow_address, amount=10**6)
    await evm.fund(escrow_id, EXPERT, "USDC", 10**6, 500)
    assert (await sync_funding(app.runtime, chains(evm))).funded == [escrow_id]
    return escrow_id


async def test_refund_by_the_client_goes_through_the_operators_refund_and_is_reported(
    app: App, market: Market, comments: Comments, evm: EvmEnv, fake_github: FakeGitHub
) -> None:
    m = market
    escrow_id = await funded_story_in_progress(app, m, comments, evm)
    by_dev = comments.created("/bmad refund 1.3", DEV)
    await say(app, by_dev)
    assert "only the project's client may" in reply(fake_github, by_dev)

    asked = comments.created("/bmad refund 1.3", CLIENT)
    await say(app, asked)
    assert reactions(fake_github, asked) == ["eyes"]
    assert "refund of escrow" in reply(fake_github, asked)
    # Held from the command's own transaction: the release worker refuses it from now on.
    assert await m.scalar("SELECT refund_requested_at IS NOT NULL FROM escrow_chain_state") in (1, True)
    twice = comments.created("/bmad refund 1.3", CLIENT)
    await say(app, twice)
    assert "already requested" in reply(fake_github, twice)

    await RequestedRefunds(app.runtime, chains(evm), chain_poll_seconds=0.01).run_until_idle()
    assert (await escrow_row(m, escrow_id))["status"] == "REFUNDED"
    assert await evm.balance("USDC", CLIENT_ADDRESS) == 10**6
    assert await evm.balance("USDC", EXPERT) == 0
    await say(app, comments.created("/bmad status", CLIENT))  # brings the outbox along
    text = reply(fake_github, asked)
    assert "refunded: [transaction]" in text
    assert reactions(fake_github, asked) == ["+1"]
    [(state,)] = await m.rows("SELECT state FROM refund_request")
    assert state == "refunded"


async def test_refund_is_refused_for_a_done_story_and_a_release_is_never_refunded(
    app: App, market: Market, comments: Comments, evm: EvmEnv, fake_github: FakeGitHub
) -> None:
    m = market
    story_id = await done_story(app, m)
    escrow_id = await create_escrow(m, story_id, contract_address=evm.escrow_address, amount=10**6)
    await evm.fund(escrow_id, EXPERT, "USDC", 10**6, 500)
    await sync_funding(app.runtime, chains(evm))
    asked = comments.created("/bmad refund 1.3", CLIENT)
    await say(app, asked)
    assert "is DONE" in reply(fake_github, asked)
    assert await m.scalar("SELECT count(*) FROM refund_request") == 0
    await Releaser(app.runtime, chains(evm), poll_seconds=0.01, waiting_retry_seconds=0).run_until_idle()
    assert (await escrow_row(m, escrow_id))["status"] == "RELEASED"
    assert await evm.balance("USDC", EXPERT) == 950_000


async def test_escrow_shows_how_to_fund_a_pending_escrow(
    app: App, market: Market, comments: Comments, evm: EvmEnv, fake_github: FakeGitHub
) -> None:
    m = market
    from tests.workflow import STORY_PATH, story_file

    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await say(app, comments.created("/bmad validate 1.3 score=9", PM))
    row = await story(m)
    await m.accept_bid(row["id"], DEV)
    escrow_id = await create_escrow(
        m, row["id"], contract_address=evm.escrow_address, amount=10**6, status=EscrowStatus.PENDING
    )
    asked = comments.created("/bmad escrow 1.3", CLIENT)
    await say(app, asked)
    text = reply(fake_github, asked)
    assert escrow_id in text and "PENDING" in text
    stranger = comments.created("/bmad escrow 1.3", PM)
    await say(app, stranger)
    assert "only the project's client or the story's developer may" in reply(fake_github, stranger)
