"""The story-workflow benchmark: many stories driven from story file to DONE through `bmad-app serve`.

    python bench/lifecycle.py                 # 200 stories
    python bench/lifecycle.py --stories 50    # a quick run
    python bench/lifecycle.py --contention 30 # 30 PRs naming one story, opened at once, two workers

Everything runs on 127.0.0.1: a fresh PostgreSQL database, the fake GitHub the tests use (serving the
story and gate files, checking the app's JWT and installation tokens), and `bmad-app serve` as a real
process with its worker and outbox sender. Each story gets six signed deliveries, sent in waves (every
story's step k, concurrently, before step k+1): story file pushed as Draft, pushed as Approved by the
PM, the marketplace accepts the developer's bid (a database write, as the marketplace would), PR opened
ready for review, QA's PASS gate pushed to the PR branch, PR merged.

It prints story transitions per second (audit rows that change a status, over the time from the first
delivery sent to the last one processed), delivery-to-state latency (p50/p99 of `processed_at -
received_at` in the inbox: from the ingress's commit to the commit of the handler's changes), and the
ingress-only acknowledgement rate of the same run beside the figures of bench/ingress.py when it has
run. It checks that every story reached DONE exactly once, with one escrow release request each.

The contention case (`--contention N`) approves one story, then opens N pull requests naming it at
once, with `bmad-app serve` and a second `bmad-app worker` process: every delivery takes the same
story's lock. It prints deliveries per second (from the first delivery sent until all are done),
PostgreSQL's own deadlock count for the database (`pg_stat_database.deadlocks`), and how many
deliveries needed more than one attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
sys.path.insert(0, str(ROOT))

from github_app.config import Settings  # noqa: E402
from github_app.db import migrate  # noqa: E402
from github_app.db.engine import asyncpg_dsn  # noqa: E402
from github_app.demo.fake_github import FakeGitHub  # noqa: E402
from github_app.runtime import Runtime  # noqa: E402
from tests.deliveries import headers_for  # noqa: E402
from tests.github_fixtures import GITHUB_APP_ID, INSTALLATION_ID, REPO, generate_key_pair  # noqa: E402
from tests.workflow import DEV, PM, QA, Market, gate_file, seed_market, story_file  # noqa: E402

ADMIN_DSN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = os.environ.get("BENCH_DATABASE", "bmad_lifecycle")
SECRET = "bench-webhook-secret-0123456789"
SEND_CONCURRENCY = 32


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def process_tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += _children(pid)
    return pids


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process: the measure that does not depend on the machine's load."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def worker_pid(root: int) -> int | None:
    """The worker process `serve` starts (the one that is not the HTTP process nor a helper)."""
    for pid in process_tree(root)[1:]:
        if "resource_tracker" not in command_of(pid):
            return pid
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fresh_database() -> str:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()
    url = ADMIN_DSN.rsplit("/", 1)[0] + f"/{DATABASE}"
    await asyncio.to_thread(migrate.upgrade, url)
    return url


class Driver:
    def __init__(self, market: Market, url: str, session: aiohttp.ClientSession) -> None:
        self.market = market
        self.url = url
        self.session = session
        self.sent = 0
        self.ack_seconds: list[float] = []
        self.gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def send(self, event: str, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        async with self.gate:
            started = time.perf_counter()
            async with self.session.post(self.url, data=body, headers=headers_for(event, body, SECRET)) as r:
                if r.status != 202:
                    raise RuntimeError(f"delivery answered {r.status}: {await r.text()}")
            self.ack_seconds.append(time.perf_counter() - started)
        self.sent += 1

    async def wave(self, deliveries: list[tuple[str, dict[str, Any]]], db: asyncpg.Connection) -> None:
        await asyncio.gather(*(self.send(event, data) for event, data in deliveries))
        while True:  # the next step of a story needs this one applied
            left = await db.fetchval("SELECT count(*) FROM webhook_inbox WHERE state <> 'done'")
            dead = await db.fetchval("SELECT count(*) FROM webhook_inbox WHERE state = 'dead'")
            if dead:
                raise RuntimeError(f"{dead} deliveries died: see `bmad-app deliveries list --state dead`")
            if left == 0:
                return
            await asyncio.sleep(0.02)


async def start_stack() -> tuple[FakeGitHub, str, Runtime, Market, int, dict[str, str]]:
    """The fake GitHub, a fresh seeded database, and the environment `bmad-app` runs with against them."""
    WORK.mkdir(exist_ok=True)
    keys = generate_key_pair()
    fake = FakeGitHub(GITHUB_APP_ID, keys.public_pem)
    fake.add_repo(REPO)
    fake.add_installation(INSTALLATION_ID)
    await fake.start()
    db_url = await fresh_database()
    runtime = await Runtime.create(Settings(database_url=db_url))
    market = await seed_market(runtime, fake)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "GITHUB_APP_ID": str(GITHUB_APP_ID),
        "GITHUB_PRIVATE_KEY": keys.private_pem,
        "GITHUB_API_URL": fake.url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "PORT": str(port),
        # WORKER_POLL_SECONDS stays at its default: the ingress's NOTIFY and each commit's wakes start the
        # work; a short poll only added empty claims.
        "WORKER_CONCURRENCY": "8",
        # The fake GitHub is local: pacing the outbox to GitHub's 1 write/s would only measure the pacing.
        "GITHUB_WRITES_PER_SECOND": "1000",
    }
    return fake, db_url, runtime, market, port, env


async def wait_ready(session: aiohttp.ClientSession, port: int) -> None:
    for _ in range(200):
        try:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)


async def run(stories: int, profile: bool = False) -> dict[str, Any]:
    fake, db_url, runtime, market, port, env = await start_stack()
    log = (WORK / "lifecycle-server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "github_app", "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    db = await asyncpg.connect(asyncpg_dsn(db_url))  # the app's search_path: its tables are in its schema
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, port)
            worker = worker_pid(server.pid)
            cpu_before = {pid: cpu_seconds(pid) for pid in process_tree(server.pid)}
            spy = None
            if profile and worker is not None:
                # A sampling profile of the worker process (py-spy must be installed beside the project).
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "-p",
                        str(worker),
                        "--nonblocking",
                        "--gil",  # only what runs Python: the CPU, not the waits
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-o",
                        str(WORK / "lifecycle-worker.profile.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            driver = Driver(market, f"http://127.0.0.1:{port}/api/github/webhooks", session)
            paths = [f"docs/stories/{1 + i // 50}.{1 + i % 50}.story-{i}.md" for i in range(stories)]
            ids = [(1 + i // 50, 1 + i % 50) for i in range(stories)]
            started = time.perf_counter()
            await driver.wave(
                [
                    ("push", market.push("main", {p: story_file("Draft", f"Story {i}", e, s)}, PM))
                    for i, (p, (e, s)) in enumerate(zip(paths, ids, strict=True))
                ],
                db,
            )
            await driver.wave(
                [
                    ("push", market.push("main", {p: story_file("Approved", f"Story {i}", e, s)}, PM))
                    for i, (p, (e, s)) in enumerate(zip(paths, ids, strict=True))
                ],
                db,
            )
            for story_id in [r[0] for r in await db.fetch('SELECT id FROM "Story"')]:
                await market.accept_bid(story_id, DEV)
            heads = {n: f"{n:08d}" + "c" * 32 for n in range(1, stories + 1)}
            await driver.wave(
                [
                    (
                        "pull_request",
                        market.pr(
                            "opened", n, title=f"Story {e}.{s}: work", branch=f"story/{e}.{s}", head_sha=heads[n]
                        ),
                    )
                    for n, (e, s) in enumerate(ids, start=1)
                ],
                db,
            )
            await driver.wave(
                [
                    (
                        "push",
                        market.push(
                            f"story/{e}.{s}",
                            {f"docs/qa/gates/{e}.{s}-story.yml": gate_file("PASS", story=f"{e}.{s}")},
                            QA,
                        ),
                    )
                    for e, s in ids
                ],
                db,
            )
            await driver.wave(
                [
                    (
                        "pull_request",
                        market.pr(
                            "closed",
                            n,
                            merged=True,
                            title=f"Story {e}.{s}: work",
                            branch=f"story/{e}.{s}",
                            head_sha=heads[n],
                        ),
                    )
                    for n, (e, s) in enumerate(ids, start=1)
                ],
                db,
            )
            elapsed = time.perf_counter() - started
            # What GitHub shows lags behind the database by design (paced, coalesced): wait for it.
            for _ in range(1200):
                if not await db.fetchval("SELECT count(*) FROM github_outbox WHERE sent_version < version"):
                    break
                await asyncio.sleep(0.05)
            outbox_drained = time.perf_counter() - started
            cpu = {pid: cpu_seconds(pid) - cpu_before.get(pid, 0.0) for pid in process_tree(server.pid)}
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await asyncio.to_thread(spy.wait, 60)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(server.wait, 30)  # the fake GitHub in this process keeps answering
        except subprocess.TimeoutExpired:  # the figures are in the database already
            server.kill()
            server.wait()
        log.close()
    done = await db.fetchval("""SELECT count(*) FROM "Story" WHERE status = 'DONE'""")
    releases = await db.fetchval("SELECT count(*) FROM escrow_release_request")
    completed = await db.fetchval("""SELECT count(*) FROM "StoryAuditLog" WHERE action = 'completed'""")
    transitions = await db.fetchval("""SELECT count(*) FROM "StoryAuditLog" WHERE "toStatus" IS NOT NULL""")
    latencies = sorted(
        r[0]
        for r in await db.fetch(
            "SELECT EXTRACT(EPOCH FROM processed_at - received_at) FROM webhook_inbox WHERE state = 'done'"
        )
    )
    outbox_left = await db.fetchval("SELECT count(*) FROM github_outbox WHERE sent_version < version")
    await db.close()
    await runtime.close()
    await fake.close()
    if done != stories or releases != stories or completed != stories:
        raise SystemExit(
            f"FAILED: {done} DONE, {releases} release requests, {completed} completions for {stories} stories"
        )
    return {
        "stories": stories,
        "deliveries": driver.sent,
        "elapsed_s": elapsed,
        "transitions": transitions,
        "transitions_per_s": transitions / elapsed,
        "deliveries_per_s": driver.sent / elapsed,
        "latency_p50_ms": 1000 * float(statistics.median(latencies)),
        "latency_p99_ms": 1000 * float(latencies[int(0.99 * (len(latencies) - 1))]),
        "ack_p50_ms": 1000 * statistics.median(driver.ack_seconds),
        "ack_p99_ms": 1000 * sorted(driver.ack_seconds)[int(0.99 * (len(driver.ack_seconds) - 1))],
        "outbox_unsent": outbox_left,
        "outbox_drained_s": outbox_drained,
        "worker_cpu_s": cpu.get(worker or -1, 0.0),
        "http_cpu_s": cpu.get(server.pid, 0.0),
        "worker_cpu_ms_per_delivery": 1000 * cpu.get(worker or -1, 0.0) / driver.sent,
        "load_average": os.getloadavg(),
        "check_runs": len(fake.check_runs),
        "comments": len(fake.comments),
    }


async def pg_deadlocks(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))


async def run_contention(prs: int) -> dict[str, Any]:
    fake, db_url, runtime, market, port, env = await start_stack()
    log = (WORK / "contention-server.log").open("w")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "github_app", "serve"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        ),
        subprocess.Popen(
            [sys.executable, "-m", "github_app", "worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        ),
    ]
    db = await asyncpg.connect(asyncpg_dsn(db_url))  # the app's search_path: its tables are in its schema
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, port)
            driver = Driver(market, f"http://127.0.0.1:{port}/api/github/webhooks", session)
            path = "docs/stories/1.1.story.md"
            await driver.wave([("push", market.push("main", {path: story_file("Draft", "Story", 1, 1)}, PM))], db)
            await driver.wave([("push", market.push("main", {path: story_file("Approved", "Story", 1, 1)}, PM))], db)
            await market.accept_bid(await db.fetchval('SELECT id FROM "Story"'), DEV)
            deadlocks_before = await pg_deadlocks(db)
            started = time.perf_counter()
            opened = [
                (
                    "pull_request",
                    market.pr(
                        "opened", n, title="Story 1.1: work", branch=f"story/1.1-{n}", head_sha=f"{n:08d}" + "d" * 32
                    ),
                )
                for n in range(1, prs + 1)
            ]
            await asyncio.gather(*(driver.send(event, data) for event, data in opened))
            for _ in range(6000):  # at most 5 minutes; failed attempts back off for seconds
                if not await db.fetchval("SELECT count(*) FROM webhook_inbox WHERE state <> 'done'"):
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            left = await db.fetchval("SELECT count(*) FROM webhook_inbox WHERE state <> 'done'")
            deadlocks = await pg_deadlocks(db) - deadlocks_before
            retried = await db.fetchval(
                "SELECT count(*) FROM webhook_inbox WHERE event = 'pull_request' AND attempts > 1"
            )
            for _ in range(1200):  # the fake GitHub lives in this process: let the senders finish with it
                if not await db.fetchval("SELECT count(*) FROM github_outbox WHERE sent_version < version"):
                    break
                await asyncio.sleep(0.05)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            await asyncio.to_thread(process.wait, 30)
        log.close()
    await db.close()
    await runtime.close()
    await fake.close()
    return {
        "prs": prs,
        "elapsed_s": elapsed,
        "deliveries_per_s": prs / elapsed,
        "deadlocks": deadlocks,
        "retried": retried,
        "not_done": left,
    }


def contention_table(r: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"## Contention benchmark, {stamp}",
            "",
            f"{r['prs']} pull requests naming one story, opened at once; `bmad-app serve` and a second `bmad-app "
            "worker` on PostgreSQL (8 handlers each), fake GitHub on 127.0.0.1.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| deliveries processed per second | {r['deliveries_per_s']:.1f} ({r['prs']} in {r['elapsed_s']:.2f} s) |",
            f"| deadlocks PostgreSQL detected | {r['deadlocks']} |",
            f"| deliveries that needed more than one attempt | {r['retried']} |",
            f"| deliveries not done at the end | {r['not_done']} |",
        ]
    )


def ingress_reference() -> str:
    path = WORK / "ingress-results.json"
    if not path.exists():
        return "run `python bench/ingress.py` for the ingress-only throughput on this machine"
    data = json.loads(path.read_text())
    rows = data if isinstance(data, list) else data.get("rows", data.get("servers", []))
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and str(row.get("server", "")).startswith("bmad-app serve"):
            return f"{row['server']}: {row.get('req_s', row.get('rps', '?'))} req/s (bench/ingress.py)"
    return "see bench/.work/ingress-results.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="record a py-spy profile of the worker process")
    parser.add_argument("--contention", type=int, metavar="PRS", help="run the contention case with PRS pull requests")
    args = parser.parse_args()
    if args.contention:
        table = contention_table(asyncio.run(run_contention(args.contention)))
        print(table)
        (WORK / "contention-results.md").write_text(table + "\n")
        return
    r = asyncio.run(run(args.stories, args.profile))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(
        [
            f"## Story lifecycle benchmark, {stamp}",
            "",
            f"{r['stories']} stories, {r['deliveries']} deliveries in 5 waves, `bmad-app serve` on PostgreSQL "
            "(an HTTP process, and a worker process running 8 handlers at once and the outbox sender), fake GitHub "
            "on 127.0.0.1. Each wave puts up to 200 deliveries in the inbox at once: latency includes their queueing.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| story transitions per second | {r['transitions_per_s']:.1f} ({r['transitions']} in {r['elapsed_s']:.1f} s) |",
            f"| deliveries processed per second | {r['deliveries_per_s']:.1f} |",
            f"| worker process CPU per delivery (load-insensitive) | {r['worker_cpu_ms_per_delivery']:.1f} ms "
            f"({r['worker_cpu_s']:.1f} s; HTTP process {r['http_cpu_s']:.1f} s) |",
            f"| load average at the end (1/5/15 min) | {' / '.join(f'{x:.1f}' for x in r['load_average'])} |",
            f"| delivery-to-state latency p50 / p99 | {r['latency_p50_ms']:.0f} ms / {r['latency_p99_ms']:.0f} ms |",
            f"| ingress acknowledgement p50 / p99 (same run, 32 concurrent senders) | "
            f"{r['ack_p50_ms']:.1f} ms / {r['ack_p99_ms']:.1f} ms |",
            f"| ingress only, for comparison | {ingress_reference()} |",
            f"| every story DONE once, one release request each | yes ({r['stories']}) |",
            f"| check runs / PR comments on the fake GitHub (all sent after; new comments are held to GitHub's "
            f"80 a minute) | "
            f"{r['check_runs']} / {r['comments']} ({r['outbox_drained_s']:.1f} s; {r['outbox_unsent']} unsent) |",
        ]
    )
    print(table)
    (WORK / "lifecycle-results.md").write_text(table + "\n")
    (WORK / "lifecycle-results.json").write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
