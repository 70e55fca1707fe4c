"""Payout wallets are checked on-chain where a node is configured: a contract is refused on Polygon, a
program or a token account on Solana (tests/test_escrow_solana_operator.py); with no node configured
the address is stored on its form alone and the command says so; a node that does not answer refuses."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from spl.token.constants import TOKEN_PROGRAM_ID

from github_app.demo.evm_env import EvmEnv, address, deploy_env, expert_key, in_process_web3
from github_app.demo.fake_github import FakeGitHub
from github_app.demo.solana_env import solana_env
from github_app.escrow.wallets import NodeWalletChecker, WalletError, set_wallet
from tests.chain.solana_rpc import LiteSvmRpc
from tests.harness import App
from tests.workflow import DEV, Market, seed_market

ROOT = Path(__file__).resolve().parent.parent
EMAIL = f"{DEV}@example.com"


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def wallet_command(db_url: str, chain: str, wallet: str, **extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SOLANA_", "DATABASE_URL"))}
    env.update(DATABASE_URL=db_url, **extra)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "github_app", "wallet", "set", "--user", EMAIL, "--chain", chain, wallet,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_contract_is_refused_as_a_polygon_payout_wallet(app: App, market: Market) -> None:
    evm: EvmEnv = await deploy_env(in_process_web3())
    checker = NodeWalletChecker(app.runtime.settings, w3=evm.w3)
    for contract in (evm.escrow_address, evm.tokens["USDC"]):
        async with app.runtime.sessionmaker() as session, session.begin():
            with pytest.raises(WalletError, match="is a contract, not a wallet"):
                await set_wallet(session, EMAIL, "polygon", contract, checker)
    wallet = address(expert_key(7))  # an account nobody has used yet: fine
    async with app.runtime.sessionmaker() as session, session.begin():
        await set_wallet(session, EMAIL, "polygon", wallet, checker)
    assert await market.rows("SELECT address FROM wallet WHERE chain = 'polygon'") == [(wallet,)]


@pytest.mark.external_chain
async def test_wallet_set_asks_the_configured_solana_node_and_says_when_none_is_configured(
    app: App, market: Market, db_url: str, tmp_path: Path
) -> None:
    sol = solana_env()
    rpc = LiteSvmRpc(sol.svm)
    url = await rpc.start()
    await app.runtime.engine.dispose()
    try:
        code, out = await wallet_command(db_url, "solana", str(TOKEN_PROGRAM_ID), SOLANA_RPC_URL=url)
        assert code == 1 and "is a program (an executable account), not a wallet" in out
        code, out = await wallet_command(db_url, "solana", str(sol.client.pubkey()), SOLANA_RPC_URL=url)
        # One line, the wallet's: the Solana client's per-request log lines stay out of the command's output.
        [line] = out.splitlines()
        assert code == 0 and line.startswith(f"{EMAIL} (") and "not checked" not in line
    finally:
        await rpc.close()
    # The node is gone: nothing is stored unchecked.
    code, out = await wallet_command(db_url, "solana", str(sol.treasury), SOLANA_RPC_URL=url)
    assert code == 1 and "cannot check" in out and "try again later" in out
    # No node configured at all: stored on its form, and the operator is told it was not checked.
    code, out = await wallet_command(db_url, "solana", str(sol.treasury))
    assert code == 0 and "not checked on-chain (SOLANA_RPC_URL is not set)" in out
    rows = await market.rows("SELECT address FROM wallet WHERE chain = 'solana'")
    assert rows == [(str(sol.treasury),)]
