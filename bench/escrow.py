"""The escrow release benchmark: merge deliveries in, RELEASED escrows out, on real chain code.

    python bench/escrow.py                      # 100 stories, hardhat node and py-evm in-process
    python bench/escrow.py --stories 30 --chain hardhat
    python bench/escrow.py --stories 40 --chain litesvm      # Solana: LiteSVM in-process
    python bench/escrow.py --stories 40 --chain litesvm-rpc  # Solana: solana-py's AsyncClient to the
                                                             # LiteSVM-backed JSON-RPC server the tests use

Each story is driven to "QA accepted, PR open" through signed deliveries (the app in-process: ingress,
worker, handlers, the fake GitHub), its escrow is created (as the marketplace does), funded on-chain by
the client and marked FUNDED by `escrow sync`. Then every story's merge delivery is sent at once and
the clock runs until every escrow is RELEASED: the worker turns each merge into DONE and a release
request, the release worker signs, records, broadcasts, waits for 1 confirmation and marks.

It prints releases per second over that window, the time from each merge delivery's receipt to its
escrow's `releasedAt` (p50, p99), and beside them the chain's own time per release transaction (sign,
send, receipt or signature status; one at a time, no database). On Solana the escrows are USDC-SPL
accounts at create_with_seed(authority, id) funded by the client's TransferChecked. The database is PostgreSQL (BENCH_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/postgres, database bmad_escrow_bench): SQLite has one writer and
releases one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from web3 import AsyncWeb3  # noqa: E402

from github_app.chains.rpc_http import node_web3  # noqa: E402
from github_app.config import Settings  # noqa: E402
from github_app.db import migrate  # noqa: E402
from github_app.demo.evm_env import CLIENT_KEY, address, deploy_env, expert_key, in_process_web3  # noqa: E402
from github_app.demo.fake_github import FakeGitHub  # noqa: E402
from github_app.demo.solana_env import DECIMALS, SolanaEnv, solana_env  # noqa: E402
from github_app.escrow.backends import Chains  # noqa: E402
from github_app.escrow.funding import sync_funding  # noqa: E402
from github_app.escrow.releases import Releaser  # noqa: E402
from github_app.inbox.group_commit import GroupCommitWriter  # noqa: E402
from github_app.inbox.worker import Worker  # noqa: E402
from github_app.runtime import Runtime  # noqa: E402
from github_app.server import default_router, depth_sampler, open_writer, readiness, wake_on_processed  # noqa: E402
from github_app.web import create_app  # noqa: E402
from tests.chain.market import create_escrow, set_wallet  # noqa: E402
from tests.chain.solana_rpc import LiteSvmRpc  # noqa: E402
from tests.github_fixtures import GITHUB_APP_ID, INSTALLATION_ID, REPO, generate_key_pair  # noqa: E402
from tests.harness import App  # noqa: E402
from tests.workflow import CLIENT, DEV, GATE_PATH, PM, QA, STORY_PATH, gate_file, seed_market, story_file  # noqa: E402

ADMIN_DSN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "bmad_escrow_bench"
EXPERT = address(expert_key(1))
AMOUNT = 10**6


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fresh_database() -> str:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    await conn.close()
    url = ADMIN_DSN.rsplit("/", 1)[0] + "/" + DATABASE
    await asyncio.to_thread(migrate.upgrade, url)
    return url


class EvmBench:
    """Polygon's code path on an EVM: the escrow contract, a USDC-like ERC-20, the arbiter's releases."""

    wallet_chain = "polygon"

    def __init__(self, label: str, w3: AsyncWeb3) -> None:
        self.label, self.w3 = label, w3

    async def start(self) -> None:
        self.evm = await deploy_env(self.w3)
        self.expert = EXPERT

    async def stop(self) -> None:
        pass

    async def escrow(self, m: Any, story_id: str) -> str:
        escrow_id = await create_escrow(m, story_id, contract_address=self.evm.escrow_address, amount=AMOUNT)
        await self.evm.fund(escrow_id, EXPERT, "USDC", AMOUNT, 500)
        return escrow_id

    def chains(self) -> Chains:
        return Chains(backends={"polygon": self.evm.chain(confirmations=1)})

    async def expert_balance(self) -> int:
        return int(await self.evm.balance("USDC", EXPERT))

    async def chain_time_per_release(self, count: int) -> float:
        """The chain's own cost: fund `count` escrows, then release them one at a time, no database."""
        chain = self.evm.chain()
        ids = [f"bench-direct-{i}-{time.monotonic_ns()}" for i in range(count)]
        for escrow_id in ids:
            await self.evm.fund(escrow_id, EXPERT, "USDC", 1000, 500)
        started = time.perf_counter()
        for escrow_id in ids:
            unsigned = await chain.unsigned("release", escrow_id, client=address(CLIENT_KEY))
            signed = chain.sign(unsigned, await chain.pending_nonce())
            await chain.broadcast(signed)
            while not (await chain.outcome(signed)).landed:
                await asyncio.sleep(0.005)
        return (time.perf_counter() - started) / count


class SolanaBench:
    """Solana's code path on LiteSVM: USDC-SPL escrow accounts, one atomic release transaction each;
    in-process, or through solana-py's AsyncClient to the LiteSVM-backed JSON-RPC server."""

    wallet_chain = "solana"

    def __init__(self, label: str, rpc: bool) -> None:
        self.label, self.rpc = label, rpc
        self.server: LiteSvmRpc | None = None

    async def start(self) -> None:
        from solders.keypair import Keypair

        from github_app.chains.solana import LiteSvmTransport, RpcTransport, SolanaChain, Transport

        self.sol: SolanaEnv = solana_env()
        self.expert = str(Keypair().pubkey())
        transport: Transport = LiteSvmTransport(self.sol.svm)
        if self.rpc:
            self.server = LiteSvmRpc(self.sol.svm)
            transport = RpcTransport(await self.server.start(), "finalized")
        self.chain = SolanaChain(
            transport,
            self.sol.authority,
            treasury=str(self.sol.treasury),
            usdc_mint=str(self.sol.mint),
            usdc_decimals=DECIMALS,
        )

    async def stop(self) -> None:
        await self.chain.close()
        if self.server is not None:
            await self.server.close()

    async def _funded_account(self, escrow_id: str) -> None:
        await self.chain.ensure_account(escrow_id)
        self.sol.fund(self.chain.escrow_account(escrow_id), AMOUNT)

    async def escrow(self, m: Any, story_id: str) -> str:
        escrow_id = await create_escrow(
            m, story_id, chain="solana", currency="USDC-SPL", amount=AMOUNT, contract_address="-"
        )
        async with m.runtime.engine.begin() as conn:
            from sqlalchemy import text

            await conn.execute(
                text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
                {"a": self.chain.address_of(escrow_id), "e": escrow_id},
            )
        await self._funded_account(escrow_id)
        return escrow_id

    def chains(self) -> Chains:
        return Chains(backends={"solana": self.chain})

    async def expert_balance(self) -> int:
        from solders.pubkey import Pubkey

        return self.sol.balance(Pubkey.from_string(self.expert))

    async def chain_time_per_release(self, count: int) -> float:
        import uuid

        ids = [str(uuid.uuid4()) for _ in range(count)]
        for escrow_id in ids:
            await self._funded_account(escrow_id)
        started = time.perf_counter()
        for escrow_id in ids:
            signed = await self.chain.build_release(escrow_id, self.expert, AMOUNT, 500)
            await self.chain.broadcast(signed)
            while not (await self.chain.outcome(signed)).landed:
                await asyncio.sleep(0.005)
        return (time.perf_counter() - started) / count


def start_profiler() -> Any:
    """BENCH_PROFILE=<file>: a py-spy sample of this process over the measured window only."""
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return None
    import subprocess

    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(os.getpid()), "-r", "200", "--nonblocking", "--gil", "-f", "raw", "-o", out]
    )


def stop_profiler(profiler: Any) -> None:
    if profiler is not None:
        import signal

        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=30)


async def run(bench: Any, stories: int) -> dict[str, Any]:
    await bench.start()
    url = await fresh_database()
    keys = generate_key_pair()
    fake = FakeGitHub(GITHUB_APP_ID, keys.public_pem)
    fake.add_repo(REPO)
    fake.add_installation(INSTALLATION_ID)
    await fake.start()
    settings = Settings(
        database_url=url,
        webhook_secrets=("test-webhook-secret-1",),
        github_app_id=GITHUB_APP_ID,
        github_private_key=keys.private_pem,
        github_api_url=fake.url,
        worker_concurrency=8,
        escrow_release_concurrency=16,
    )
    runtime = await Runtime.create(settings)
    writer = GroupCommitWriter(await open_writer(runtime))
    writer.start()
    client = TestClient(
        TestServer(create_app(writer, settings.webhook_secrets, readiness(runtime), depth_sampler(runtime)))
    )
    await client.start_server()
    app = App(client, runtime, Worker(runtime, default_router()))
    try:
        m = await seed_market(runtime, fake)
        await set_wallet(m, DEV, bench.wallet_chain, bench.expert)
        if bench.wallet_chain == "polygon":  # the escrow is the one the client funds from this wallet
            await set_wallet(m, CLIENT, "polygon", address(CLIENT_KEY))
        merges = []
        for n in range(1, stories + 1):
            path, gate = STORY_PATH.replace("1.3", f"1.{n}"), GATE_PATH.replace("1.3", f"1.{n}")
            await app.deliver("push", m.push("main", {path: story_file("Approved", number=n)}, PM))
            story_id = str(await m.scalar('SELECT id FROM "Story" WHERE "storyNumber" = :n', n=n))
            await m.accept_bid(story_id, DEV)
            sha, branch, title = m.sha(), f"story/1.{n}-work", f"Story 1.{n}: work"
            await app.deliver("pull_request", m.pr("opened", n, head_sha=sha, branch=branch, title=title))
            await app.deliver("push", m.push(branch, {gate: gate_file("PASS", story=f"1.{n}")}, QA))
            await bench.escrow(m, story_id)
            merges.append(m.pr("closed", n, merged=True, head_sha=sha, branch=branch, title=title, sender=PM))
        chains = bench.chains()
        assert len((await sync_funding(runtime, chains)).funded) == stories
        # The worker wakes on each delivery (as on PostgreSQL's NOTIFY) and polls at serve's default; the
        # release worker checks its transactions twice per block of the local node (50 ms).
        releaser = Releaser(
            runtime,
            chains,
            poll_seconds=0.025,
            waiting_retry_seconds=0.05,
            concurrency=settings.escrow_release_concurrency,
        )

        stop = asyncio.Event()
        wake_on_processed(app.worker, releaser)  # as `serve` wires them
        tasks = [asyncio.create_task(app.worker.run(stop)), asyncio.create_task(releaser.run(stop))]
        profiler = start_profiler()
        cpu_started = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(app.deliver("pull_request", merge, process=False) for merge in merges))
        app.worker.wake(len(merges))
        all_done = None
        while await m.scalar("""SELECT count(*) FROM "Escrow" WHERE status = 'RELEASED'""") < stories:
            if all_done is None and await m.scalar("SELECT count(*) FROM escrow_release_request") == stories:
                all_done = time.perf_counter() - started
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        stop_profiler(profiler)
        stop.set()
        await asyncio.gather(*tasks)
        latencies = [
            float(r[0])
            for r in await m.rows(
                """SELECT EXTRACT(EPOCH FROM (e."releasedAt" - i.received_at)) FROM "Escrow" e
                   JOIN escrow_release_request r ON r.escrow_id = e.id
                   JOIN "Story" s ON s.id = r.story_id
                   JOIN webhook_inbox i ON i.event = 'pull_request' AND i.action = 'closed'
                        AND (convert_from(i.payload, 'UTF8')::jsonb -> 'pull_request' ->> 'number')::int = s."storyNumber" """
            )
        ]
        assert await bench.expert_balance() == stories * 950_000, "every expert paid exactly once"
        per_tx = await bench.chain_time_per_release(min(20, stories))
        return {
            "label": bench.label,
            "stories": stories,
            "releases_per_s": stories / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": pct(latencies, 0.99) * 1000,
            "chain_ms_per_release": per_tx * 1000,
            "all_done_s": all_done or elapsed,
            "elapsed_s": elapsed,
            "cpu_ms_per_release": cpu / stories * 1000,
        }
    finally:
        await client.close()
        await writer.close()
        await writer.writer.close()
        await runtime.close()
        await fake.close()
        await bench.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stories", type=int, default=100)
    parser.add_argument("--chain", choices=("hardhat", "pyevm", "both", "litesvm", "litesvm-rpc"), default="both")
    args = parser.parse_args()
    from github_app.logs import setup_logging

    setup_logging("WARNING", "json", [])
    results = []
    if args.chain in ("hardhat", "both"):
        import contextlib

        import tests.chain.hardhat as hh

        class Factory:
            def mktemp(self, name: str) -> Path:
                path = BENCH / ".work" / name
                path.mkdir(parents=True, exist_ok=True)
                return path

        gen = hh.hardhat_url.__wrapped__(Factory())  # type: ignore[attr-defined]
        url = next(gen)
        try:
            bench = EvmBench("hardhat@2 (JSON-RPC, 1 confirmation)", node_web3(url))
            results.append(await run(bench, args.stories))
        finally:
            with contextlib.suppress(StopIteration):
                next(gen)
    if args.chain in ("pyevm", "both"):
        results.append(await run(EvmBench("py-evm in-process", in_process_web3()), args.stories))
    if args.chain == "litesvm":
        results.append(await run(SolanaBench("LiteSVM in-process", rpc=False), args.stories))
    if args.chain == "litesvm-rpc":
        results.append(await run(SolanaBench("LiteSVM JSON-RPC (AsyncClient)", rpc=True), args.stories))
    print(
        f"{'chain':40} {'stories':>7} {'releases/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'chain ms/release':>17} "
        f"{'all DONE s':>10} {'all paid s':>10} {'app CPU ms/story':>16}"
    )
    for r in results:
        print(
            f"{r['label']:40} {r['stories']:>7} {r['releases_per_s']:>11.1f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} "
            f"{r['chain_ms_per_release']:>17.1f} {r['all_done_s']:>10.1f} {r['elapsed_s']:>10.1f}"
            f" {r['cpu_ms_per_release']:>16.0f}"
        )


if __name__ == "__main__":
    from github_app.server import run_fast

    run_fast(main())  # the loop `serve`'s worker process runs on (uvloop)
