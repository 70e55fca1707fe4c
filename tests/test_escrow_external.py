"""The production transports against a real local node: `AsyncWeb3(AsyncHTTPProvider)` to hardhat,
the command line as an operator runs it, and release workers killed with SIGKILL between sign,
broadcast, confirm and mark: exactly one payment each time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from web3 import AsyncWeb3

from github_app.chains.rpc_http import KeepAliveHTTPProvider
from github_app.demo.evm_env import ARBITER_KEY, CLIENT_KEY, TREASURY_KEY, EvmEnv, address, deploy_env, expert_key
from github_app.demo.fake_github import FakeGitHub
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from tests.chain.market import create_escrow, done_story, escrow_row, set_wallet
from tests.harness import App
from tests.workflow import CLIENT, DEV, Market, seed_market

pytestmark = pytest.mark.external_chain

ROOT = Path(__file__).resolve().parent.parent
EXPERT = address(expert_key(7))
TREASURY = address(TREASURY_KEY)
CLIENT_ADDRESS = address(CLIENT_KEY)


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "polygon", EXPERT)
    await set_wallet(m, CLIENT, "polygon", CLIENT_ADDRESS)
    yield m


@pytest.fixture
async def node(hardhat_url: str) -> AsyncIterator[EvmEnv]:
    """A fresh escrow contract and tokens on the session's node (each test has its own addresses)."""
    w3 = AsyncWeb3(KeepAliveHTTPProvider(hardhat_url))
    yield await deploy_env(w3)
    await w3.provider.disconnect()  # type: ignore[attr-defined]


def chain_env(hardhat_url: str, evm: EvmEnv, db_url: str) -> dict[str, str]:
    tokens = ",".join(f"{k}={v}" for k, v in evm.tokens.items())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SOLANA_", "DATABASE_URL"))}
    env.update(
        {
            "DATABASE_URL": db_url,
            "POLYGON_RPC_URL": hardhat_url,
            "POLYGON_CHAIN_ID": str(evm.chain_id),
            "POLYGON_ESCROW_CONTRACT": evm.escrow_address,
            "POLYGON_ARBITER_KEY": ARBITER_KEY,
            "POLYGON_TREASURY": TREASURY,
            "POLYGON_TOKENS": tokens,
            "POLYGON_CONFIRMATIONS": "1",
            "POLYGON_EXPLORER_URL": "https://amoy.polygonscan.com",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def run_worker(env: dict[str, str], kill_after: str | None = None) -> int:
    args = [sys.executable, "-m", "tests.escrow_worker_process"] + ([kill_after] if kill_after else [])
    return subprocess.run(args, env=env, cwd=ROOT, timeout=120, capture_output=True).returncode


def bmad_app(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "github_app", *args], env=env, cwd=ROOT, timeout=120, capture_output=True, text=True
    )


async def test_release_through_the_http_transport(app: App, market: Market, node: EvmEnv, hardhat_url: str) -> None:
    from dataclasses import replace

    from github_app.escrow.releases import Releaser

    story_id = await done_story(app, market)
    escrow_id = await create_escrow(
        market, story_id, contract_address=node.escrow_address, amount=10**18, currency="ETH"
    )
    await node.fund(escrow_id, EXPERT, "ETH", 10**18, 500)
    settings = replace(
        app.runtime.settings,
        **{k.lower(): v for k, v in {"POLYGON_RPC_URL": hardhat_url}.items()},
        polygon_chain_id=node.chain_id,
        polygon_escrow_contract=node.escrow_address,
        polygon_arbiter_key=ARBITER_KEY,
        polygon_tokens=tuple(node.tokens.items()),
        polygon_confirmations=1,
    )
    chains = Chains.from_settings(settings)  # the production path: AsyncHTTPProvider + POA middleware
    assert (await sync_funding(app.runtime, chains)).funded == [escrow_id]
    await Releaser(app.runtime, chains, poll_seconds=0.05).run_until_idle()
    await chains.close()
    assert await node.balance("ETH", EXPERT) == 95 * 10**16
    assert await node.balance("ETH", TREASURY) == 5 * 10**16
    assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"


async def test_kill_9_between_every_step_pays_exactly_once(
    app: App, market: Market, node: EvmEnv, hardhat_url: str, db_url: str
) -> None:
    env = chain_env(hardhat_url, node, db_url)
    steps = ["bound", "signed", "broadcast", "confirmed"]
    escrows = []
    for number, _ in enumerate(steps, start=3):
        story_id = await done_story(app, market, number=number)
        escrow_id = await create_escrow(market, story_id, contract_address=node.escrow_address, amount=1000)
        await node.fund(escrow_id, EXPERT, "USDC", 1000, 500)
        escrows.append(escrow_id)
    assert bmad_app(env, "escrow", "sync").returncode == 0
    await app.runtime.engine.dispose()  # SQLite: the worker processes write; this one only reads later
    for step in steps:
        # Each run pays at most one escrow before it is killed after `step`.
        assert run_worker(env, kill_after=step) == -signal.SIGKILL
        async with app.runtime.engine.begin() as conn:
            await conn.execute(text("UPDATE escrow_release_request SET lease_expires_at = '2000-01-01 00:00:00'"))
    assert run_worker(env) == 0
    for escrow_id in escrows:
        assert (await escrow_row(market, escrow_id))["status"] == "RELEASED"
    assert await node.balance("USDC", EXPERT) == 4 * 950
    assert await node.balance("USDC", TREASURY) == 4 * 50
    assert await market.scalar("SELECT count(*) FROM escrow_chain_tx") == 4
    states = await market.rows("SELECT state FROM escrow_release_request")
    assert states == [("released",)] * 4


async def test_operator_commands_against_the_node(
    app: App, market: Market, node: EvmEnv, hardhat_url: str, db_url: str
) -> None:
    env = chain_env(hardhat_url, node, db_url)
    # deploy: a second contract with the configured arbiter and treasury
    deployed = bmad_app(env, "escrow", "deploy", "--chain", "polygon")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip().startswith("0x") and ARBITER_KEY not in deployed.stdout + deployed.stderr

    story_id = await done_story(app, market)
    escrow_id = await create_escrow(market, story_id, contract_address=node.escrow_address, amount=777)
    client = address("0x" + (0x1003).to_bytes(32, "big").hex())
    await node.fund(escrow_id, EXPERT, "USDC", 777, 500)
    before = await node.balance("USDC", client)
    # The escrow is funded, but the operator refunds it (the project was cancelled).
    refunded = bmad_app(env, "escrow", "refund", escrow_id)
    assert refunded.returncode == 0, refunded.stderr
    assert await node.balance("USDC", client) == before + 777
    assert (await escrow_row(market, escrow_id))["status"] == "REFUNDED"
    assert bmad_app(env, "escrow", "refund", escrow_id).returncode == 0  # again: reports the same refund
    assert await node.balance("USDC", client) == before + 777
    listing = json.loads(bmad_app(env, "escrow", "list", "--json").stdout)
    [item] = [i for i in listing if i["id"] == escrow_id]
    assert item["status"] == "REFUNDED" and item["refundTransactionHash"].startswith("0x")
    # The story's release never binds a refunded escrow: nothing is paid.
    from github_app.escrow.releases import Releaser

    await Releaser(app.runtime, Chains(backends={"polygon": node.chain()}), waiting_retry_seconds=0).run_until_idle()
    assert await market.rows("SELECT state, waiting_for FROM escrow_release_request") == [
        ("pending", "waiting for funding (no escrow created yet)")
    ]
    assert await node.balance("USDC", EXPERT) == 0


async def test_list_says_when_a_chain_is_not_configured(app: App, market: Market, db_url: str) -> None:
    from github_app.db.enums import EscrowStatus

    story_id = await done_story(app, market)
    await create_escrow(market, story_id, contract_address="0x" + "ab" * 20, amount=5, status=EscrowStatus.FUNDED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SOLANA_"))}
    env["DATABASE_URL"] = db_url
    out = bmad_app(env, "escrow", "list")
    assert out.returncode == 0 and "Polygon is not configured" in out.stdout


async def test_show_tells_how_to_fund_a_pending_escrow(app: App, market: Market, db_url: str) -> None:
    from github_app.chains.addresses import evm_funding
    from github_app.db.enums import EscrowStatus

    contract, token = address(expert_key(40)), address(expert_key(41))
    story_id = await done_story(app, market)
    pending = await create_escrow(market, story_id, contract_address=contract, amount=5, status=EscrowStatus.PENDING)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SOLANA_"))}
    env.update({"DATABASE_URL": db_url, "POLYGON_ESCROW_CONTRACT": contract, "POLYGON_TOKENS": f"USDC={token}"})
    out = bmad_app(env, "escrow", "show", pending)
    assert out.returncode == 0, out.stderr
    funding = evm_funding(
        pending, contract=contract, client=CLIENT_ADDRESS, expert=EXPERT, token=token, amount=5, fee_bps=500
    )
    assert f"escrow id (bytes32): `0x{funding.escrow_id.hex()}`" in out.stdout
    assert funding.approve_call in out.stdout and funding.fund_call in out.stdout
    # Once funded, the instructions are gone: nothing is left for the client to do.
    async with market.runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE \"Escrow\" SET status = 'FUNDED' WHERE id = :e"), {"e": pending})
    funded = bmad_app(env, "escrow", "show", pending)
    assert funded.returncode == 0 and "approve" not in funded.stdout


def test_wallet_set_validates_addresses(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio as aio
    from argparse import Namespace

    from github_app.db.models import User
    from github_app.escrow.commands import cmd_wallet
    from github_app.runtime import Runtime
    from tests.conftest import make_settings

    settings = make_settings(db_url)

    async def add_user() -> None:
        runtime = await Runtime.create(settings)
        async with runtime.sessionmaker() as s, s.begin():
            s.add(User(id="u-1", email="Olly@Example.com", role="DEVELOPER"))
        await runtime.close()

    aio.run(add_user())

    def wallet_set(user: str, chain: str, address: str) -> int:
        return cmd_wallet(settings, Namespace(user=user, chain=chain, address=address))

    assert wallet_set("olly@example.com", "polygon", EXPERT.lower()) == 1
    assert "EIP-55" in capsys.readouterr().err
    assert wallet_set("olly@example.com", "solana", "not-base58-0OIl") == 1
    assert "base58" in capsys.readouterr().err
    assert wallet_set("nobody@example.com", "polygon", EXPERT) == 1
    assert "no marketplace user" in capsys.readouterr().err
    assert wallet_set("olly@example.com", "polygon", EXPERT) == 0
    assert wallet_set("olly@example.com", "solana", "11111111111111111111111111111112") == 0
    assert EXPERT in capsys.readouterr().out
