"""Chain secrets: RPC URLs carry API keys and never show in a log, a stored error or command output;
key files open to others are refused (see test_escrow_config); chain keys are read only by the process
that signs, never by the internet-facing HTTP process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import text

from github_app.demo.evm_env import ARBITER_KEY, CLIENT_KEY, address
from github_app.demo.fake_github import FakeGitHub
from github_app.demo.solana_env import SolanaEnv, solana_env
from github_app.escrow.backends import Chains
from github_app.escrow.releases import Releaser
from tests.chain.market import create_escrow, done_story, set_wallet
from tests.chain.solana_rpc import LiteSvmRpc
from tests.harness import App
from tests.workflow import CLIENT, DEV, Market, seed_market

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "k3y-8f2a9c41d7e0b6a5f3c2"
EVM_CONTRACT = "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"
EXPERT_EVM = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


@pytest.fixture
def sol() -> SolanaEnv:
    return solana_env()


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub, sol: SolanaEnv) -> AsyncIterator[Market]:
    m = await seed_market(app.runtime, fake_github)
    await set_wallet(m, DEV, "solana", str(sol.client.pubkey()))
    await set_wallet(m, DEV, "polygon", EXPERT_EVM)
    await set_wallet(m, CLIENT, "polygon", address(CLIENT_KEY))  # Polygon escrows are keyed by their funder
    yield m


def private_file(path: Path, content: str) -> str:
    path.write_text(content)
    path.chmod(0o600)
    return str(path)


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


class BrokenEvmNode:
    """An EVM JSON-RPC endpoint that says which chain it serves and answers everything else with HTTP
    500 (a provider in trouble): web3's error then quotes the URL it called."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("method") == "eth_chainId":
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": hex(31337)})
        return web.Response(status=500, text="upstream unavailable")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def chain_env(db_url: str, rpc_url: str, tmp_path: Path, sol: SolanaEnv, evm_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYGON_", "SOLANA_", "DATABASE_URL", "GITHUB_"))}
    env.update(
        DATABASE_URL=db_url,
        LOG_LEVEL="DEBUG",
        SOLANA_RPC_URL=f"{rpc_url}/v2/{API_KEY}",
        SOLANA_AUTHORITY_KEYPAIR_PATH=private_file(tmp_path / "authority.json", json.dumps(list(bytes(sol.authority)))),
        SOLANA_TREASURY=str(sol.treasury),
        SOLANA_USDC_MINT=str(sol.mint),
        POLYGON_RPC_URL=f"{evm_url or rpc_url}/polygon/?apikey={API_KEY}",
        POLYGON_CHAIN_ID="31337",
        POLYGON_ESCROW_CONTRACT=EVM_CONTRACT,
        POLYGON_ARBITER_KEY_PATH=private_file(tmp_path / "arbiter.key", ARBITER_KEY),
        POLYGON_TOKENS=f"USDC={EVM_CONTRACT}",
    )
    return env


async def test_rpc_urls_with_api_keys_never_reach_logs_stored_errors_or_command_output(
    app: App, market: Market, sol: SolanaEnv, db_url: str, tmp_path: Path
) -> None:
    rpc = LiteSvmRpc(sol.svm)
    url = await rpc.start()
    rpc.fail_http = True  # every answer an HTTP 500: the clients' errors quote the URL they called
    evm_node = BrokenEvmNode()
    env = chain_env(db_url, url, tmp_path, sol, await evm_node.start())
    try:
        solana_story = await done_story(app, market, number=3)
        for chain, currency, address, number in (
            ("solana", "USDC-SPL", "x", 3),
            ("polygon", "USDC", EVM_CONTRACT, 4),
        ):
            story = solana_story if number == 3 else await done_story(app, market, number=number)
            escrow_id = await create_escrow(
                market, story, chain=chain, currency=currency, amount=1_000, contract_address=address
            )
        # Solana's row must name its real account for the read to be attempted.
        from github_app.chains.solana import SolanaChain

        settings = dataclasses.replace(
            app.runtime.settings,
            solana_rpc_url=env["SOLANA_RPC_URL"],
            solana_authority_keypair_path=env["SOLANA_AUTHORITY_KEYPAIR_PATH"],
            solana_treasury=env["SOLANA_TREASURY"],
            solana_usdc_mint=env["SOLANA_USDC_MINT"],
            polygon_rpc_url=env["POLYGON_RPC_URL"],
            polygon_chain_id=31337,
            polygon_escrow_contract=EVM_CONTRACT,
            polygon_arbiter_key_path=env["POLYGON_ARBITER_KEY_PATH"],
            polygon_tokens=(("USDC", EVM_CONTRACT),),
        )
        chains = Chains.from_settings(settings)
        solana_chain = chains.get("solana")
        assert isinstance(solana_chain, SolanaChain)
        [solana_escrow] = await market.rows("SELECT id FROM \"Escrow\" WHERE blockchain = 'solana'")
        async with market.runtime.engine.begin() as conn:
            await conn.execute(
                text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
                {"a": solana_chain.address_of(solana_escrow[0]), "e": solana_escrow[0]},
            )
            await conn.execute(text("UPDATE \"Escrow\" SET status = 'FUNDED'"))
        # A release attempt stores the node's error for the operator, without the URL it quotes.
        runtime = dataclasses.replace(app.runtime, settings=settings)
        releaser = Releaser(runtime, chains, poll_seconds=0.01, concurrency=2)
        await releaser.run_once()
        await releaser.run_once()
        await chains.close()
        errors = [e for (e,) in await market.rows("SELECT last_error FROM escrow_release_request") if e]
        assert len(errors) == 2 and any("url='[redacted]'" in e for e in errors)  # web3 quoted the URL it called
        assert not any(API_KEY in e for e in errors)

        # Escrows still PENDING: `escrow sync` reads them on-chain.
        for chain, currency in (("solana", "USDC-SPL"), ("polygon", "USDC")):
            pending = await create_escrow(
                market, solana_story, chain=chain, currency=currency, amount=5, contract_address=EVM_CONTRACT
            )
            if chain == "solana":
                async with market.runtime.engine.begin() as conn:
                    await conn.execute(
                        text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
                        {"a": solana_chain.address_of(pending), "e": pending},
                    )
        await app.runtime.engine.dispose()
        outputs = []
        for command in (["escrow", "sync"], ["escrow", "list"], ["escrow", "show", escrow_id]):
            code, out, err = await run(env, "-m", "github_app", *command)
            outputs.append(out + err)
        wallet = ["wallet", "set", "--user", f"{DEV}@example.com", "--chain", "solana", str(sol.treasury)]
        code, out, err = await run(env, "-m", "github_app", *wallet)
        outputs.append(out + err)
    finally:
        await rpc.close()
        await evm_node.close()
    text_seen = "\n".join(outputs)
    assert "NOT accepted: cannot read on-chain" in text_seen  # sync reported both failures...
    assert "cannot read escrow on-chain" in text_seen  # ...and logged them
    assert "cannot check" in text_seen  # the wallet check could not ask the node
    assert "[redacted]" in text_seen
    assert API_KEY not in text_seen


async def test_the_http_process_never_reads_a_chain_key_file(db_url: str, tmp_path: Path) -> None:
    sol = solana_env()
    env = chain_env(db_url, "http://127.0.0.1:9", tmp_path, sol)
    env["GITHUB_WEBHOOK_SECRET"] = "a-webhook-secret"
    keys = [env["SOLANA_AUTHORITY_KEYPAIR_PATH"], env["POLYGON_ARBITER_KEY_PATH"]]
    code, out, err = await run(env, "-m", "tests.http_key_probe", *keys)
    assert code == 0, err
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["http"] == []
    assert sorted(seen["worker"]) == sorted(keys)  # the probe does see the worker read them
    assert seen["configured"] == ["polygon", "solana"]


def test_the_http_settings_of_serve_hold_no_chain_key() -> None:
    from github_app.config import load_settings
    from github_app.server import http_settings

    settings = load_settings({"POLYGON_ARBITER_KEY": ARBITER_KEY})
    assert settings.polygon_arbiter_key is not None
    assert http_settings(settings).polygon_arbiter_key is None
