"""The ingress benchmark: bmad-app serve on PostgreSQL against Probot and a bare aiohttp ceiling.

    python bench/ingress.py                  # 3 interleaved rounds of 10 s per server
    python bench/ingress.py --quick          # 1 round of 3 s, to check that everything runs
    python bench/ingress.py --rounds 5 --duration 20

Each round starts, warms up, measures and stops every server in turn, on 127.0.0.1 only:

  1. bare aiohttp returning 200 (bench/ceiling_server.py): the ceiling;
  2. a minimal Probot app (bench/probot/app.js; `npm ci` first if bench/probot/node_modules is missing):
     verifies and dispatches, stores nothing;
  3. `bmad-app serve` on PostgreSQL (a fresh database, migrated with `bmad-app db upgrade`), with one
     HTTP process and then with WEB_PROCESSES=2.

The load is `wrk -t1 -c32` with bench/ingress.lua: real signed pull_request (opened, closed) and push
deliveries, each with its own X-GitHub-Delivery. After each bmad-app round every delivery answered 202
must be in `webhook_inbox`. The medians of the rounds are printed as a markdown table and written to
bench/.work/ingress-results.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
PROBOT_DIR = BENCH / "probot"
FIXTURES = REPO / "tests" / "fixtures" / "github-webhooks"
HOST = "127.0.0.1"
WEBHOOK_PATH = "/api/github/webhooks"
SECRET = "bench-webhook-secret-0123456789"
DATABASE = "bmad_bench"

# Sent in turn: mostly the ~28 KB pull_request deliveries the issue measured, with a push between.
MIX = (
    ("pull_request", "pull_request/opened.payload.json"),
    ("pull_request", "pull_request/closed.payload.json"),
    ("pull_request", "pull_request/opened.payload.json"),
    ("pull_request", "pull_request/closed.payload.json"),
    ("push", "push/payload.json"),
)

# Figures from issue 9 ("Benchmark, and the target it must reach"): medians of three rounds, wrk -t1 -c32.
ISSUE_BASELINES = (
    ("bare aiohttp, returns 200 (the ceiling)", 11_100, 6, 38),
    ("aiohttp + gidgethub `Event.from_http` (HMAC + `json.loads`), 202", 3_250, 15, 38),
    ("Probot 14 (Node; verifies and dispatches, stores nothing)", 3_500, 21, 126),
    ("the obvious durable ingress: verify, one INSERT committed per request (asyncpg), then 202",
     760, 96, 46),
    ("the same through SQLAlchemy Core", 640, 112, 68),
)
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    baseline: str  # what the issue measured for this row, shown beside it
    baseline_rps: int
    baseline_p99: int
    web_processes: int = 1
    serve_args: tuple[str, ...] = ()

    @property
    def is_bmad(self) -> bool:
        return self.key.startswith("bmad")


SERVERS = (
    ServerSpec("ceiling", "bare aiohttp, returns 200 (ceiling)", "ceiling", 11_100, 6),
    ServerSpec("probot", "Probot 14 (verifies, dispatches, stores nothing)", "Probot 14", 3_500, 21),
    ServerSpec("bmad", "bmad-app serve (PostgreSQL)", "obvious durable ingress", 760, 96),
    ServerSpec("bmad2", "bmad-app serve (2 processes)", "obvious durable ingress", 760, 96, web_processes=2),
    # Diagnostic rows, not in the default set: the ingress alone, the worker left to `bmad-app worker`.
    ServerSpec("bmad-ingress", "bmad-app serve --no-worker", "obvious durable ingress", 760, 96,
               serve_args=("--no-worker",)),
    ServerSpec("bmad2-ingress", "bmad-app serve --no-worker (2 processes)", "obvious durable ingress", 760, 96,
               web_processes=2, serve_args=("--no-worker",)),
)


@dataclass
class Result:
    server: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    processes: int
    sent: int  # warm-up and measurement together
    statuses: dict[str, int]
    errors: dict[str, int]
    acked_202: int = 0  # warm-up and measurement together, for the inbox check
    acked_200: int = 0
    inbox_rows: int | None = None
    inbox_states: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # cores used while measuring

    @property
    def missing(self) -> int | None:
        if self.inbox_rows is None:
            return None
        return max(0, self.acked_202 - self.inbox_rows)


# --------------------------------------------------------------------------------------------- setup


def ensure_venv_python() -> None:
    """This script needs the project's environment (aiohttp, asyncpg, bmad-app): re-run under it."""
    try:
        import aiohttp  # noqa: F401
        import asyncpg  # noqa: F401
    except ImportError:
        venv_python = REPO / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.prefix).resolve() != venv_python.parent.parent.resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        sys.exit("bench: run with the project's virtualenv (aiohttp and asyncpg are needed): "
                 ".venv/bin/python bench/ingress.py")


def bin_dir() -> Path:
    return Path(sys.executable).parent


def bmad_app() -> str:
    candidate = bin_dir() / "bmad-app"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("bmad-app")
    if not found:
        sys.exit("bench: `bmad-app` not found; install the project first: pip install -e .")
    return found


def require_tools() -> None:
    missing = [tool for tool in ("wrk", "node", "npm") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)} (Debian: apt-get install wrk nodejs npm)")


def install_probot() -> None:
    if (PROBOT_DIR / "node_modules" / "probot" / "package.json").exists():
        return
    print("bench: installing the pinned Probot app (npm ci in bench/probot)", flush=True)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROBOT_DIR, check=True)


def write_deliveries() -> tuple[Path, int]:
    """Sign each body once (the signature covers the body only) and list them for the wrk script."""
    manifest = WORK / "deliveries.tsv"
    lines, sizes = [], []
    for event, rel in MIX:
        path = FIXTURES / rel
        body = path.read_bytes()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        lines.append(f"{event}\tsha256={digest}\t{path}\n")
        sizes.append(len(body))
    manifest.write_text("".join(lines))
    return manifest, int(statistics.mean(sizes))


def base_env() -> dict[str, str]:
    """A clean environment: nothing inherited can point a server elsewhere or change its config."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}


def admin_dsn(args: argparse.Namespace) -> str:
    return args.pg_admin_url


def bench_database_url(args: argparse.Namespace) -> str:
    base = args.pg_admin_url.rsplit("/", 1)[0]
    return f"{base}/{DATABASE}"


async def _pg(dsn: str, *statements: str) -> list[object]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [await conn.fetchval(s) for s in statements]
    finally:
        await conn.close()


def pg(dsn: str, *statements: str) -> list[object]:
    return asyncio.run(_pg(dsn, *statements))


def create_database(args: argparse.Namespace) -> dict[str, str]:
    pg(admin_dsn(args), f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}")
    env = base_env() | {"DATABASE_URL": bench_database_url(args), "LOG_LEVEL": "WARNING"}
    subprocess.run([bmad_app(), "db", "upgrade"], env=env, cwd=run_dir(), check=True,
                   stdout=subprocess.DEVNULL)
    names = ("server_version", "synchronous_commit", "fsync", "shared_buffers")
    values = pg(bench_database_url(args), *(f"SHOW {n}" for n in names))
    return dict(zip(names, (str(v) for v in values), strict=True))


def run_dir() -> Path:
    # The servers run here: an empty directory, so no stray .env file is read.
    path = WORK / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of one process, in KiB."""
    hwm = rss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return hwm, rss


def tree_peak_rss_mib(root: int) -> tuple[float, int]:
    """Peak RSS of the process and all its descendants: each one's VmHWM, summed."""
    pids = process_tree(root)
    return sum(memory_kib(pid)[0] for pid in pids) / 1024, len(pids)


def listening_sockets(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            continue
    return count


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def ticks_since(before: dict[int, int]) -> int:
    """CPU ticks spent since `before` by the processes still alive (an exited one's are lost)."""
    after = cpu_ticks(list(before))
    return sum(max(0, after[pid] - before[pid]) for pid in after)


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "postgres":
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


class CpuSplit:
    """Where the machine's CPU went while wrk measured: the server's process tree, PostgreSQL, wrk, and
    everything else (other work on the machine disturbs the figures: it is reported, not hidden)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> CpuSplit:
        self.pids = process_tree(self.server_pid)
        self.pg = postgres_pids()
        self.t0 = time.monotonic()
        self.cpu0 = (cpu_ticks(self.pids), cpu_ticks(self.pg), busy_ticks(), os.times())
        return self

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.monotonic() - self.t0
        hz = os.sysconf("SC_CLK_TCK")
        server0, pg0, busy0, times0 = self.cpu0
        times1 = os.times()
        self.server = ticks_since(server0) / hz / elapsed
        self.postgres = ticks_since(pg0) / hz / elapsed
        # wrk is the only child reaped meanwhile, so the children's times are its own.
        self.wrk = ((times1.children_user - times0.children_user)
                    + (times1.children_system - times0.children_system)) / elapsed
        busy = (busy_ticks() - busy0) / hz / elapsed
        self.other = max(0.0, busy - self.server - self.postgres - self.wrk)


class Server:
    def __init__(self, spec: ServerSpec, round_no: int, args: argparse.Namespace) -> None:
        self.spec = spec
        self.port = free_port()
        self.args = args
        self.log_path = WORK / "logs" / f"{spec.key}-r{round_no}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str], Path, str]:
        env = base_env()
        key = self.spec.key
        if key == "ceiling":
            return [sys.executable, str(BENCH / "ceiling_server.py"), str(self.port)], env, run_dir(), "/ping"
        if key == "probot":
            env |= {"PORT": str(self.port), "HOST": HOST, "WEBHOOK_SECRET": SECRET,
                    "LOG_LEVEL": self.args.log_level.lower()}
            return ["node", "app.js"], env, PROBOT_DIR, "/ping"
        env |= {
            "DATABASE_URL": bench_database_url(self.args),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "HOST": HOST,
            "PORT": str(self.port),
            "LOG_LEVEL": self.args.log_level.upper(),
            "WEB_PROCESSES": str(self.spec.web_processes),
        }
        return [bmad_app(), "serve", *self.spec.serve_args], env, run_dir(), "/readyz"

    def start(self) -> None:
        cmd, env, cwd, ready_path = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        url = f"http://{HOST}:{self.port}{ready_path}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.label} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            if listening_sockets(self.port) >= self.spec.web_processes:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            return
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.spec.label} not ready within 60 s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"bench: {self.spec.label} ignored SIGTERM for 30 s; killing its process group", flush=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        else:
            # WEB_PROCESSES children are stopped by their parent; make sure none outlived it.
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(2)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------------------------- load


def guid_prefix(name: str) -> str:
    """The first 13 characters of a GUID, the same for the same name: bench/ingress.lua completes it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}"


def run_wrk(port: int, seconds: float, prefix: str, manifest: Path, args: argparse.Namespace) -> dict:
    url = f"http://{HOST}:{port}{WEBHOOK_PATH}"
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "-s", str(BENCH / "ingress.lua"), url, "--", str(manifest), guid_prefix(prefix), str(args.max_requests)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"wrk printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")


def inbox_rows(args: argparse.Namespace) -> tuple[int, dict[str, int]]:
    """Rows in the inbox, and how many of them the in-process worker had processed by the time the
    server stopped."""

    async def query() -> tuple[int, dict[str, int]]:
        import asyncpg

        from github_app.db.engine import asyncpg_dsn

        conn = await asyncpg.connect(asyncpg_dsn(bench_database_url(args)))
        try:
            total = await conn.fetchval("SELECT count(*) FROM webhook_inbox")
            states = await conn.fetch("SELECT state, count(*) FROM webhook_inbox GROUP BY state")
        finally:
            await conn.close()
        return int(total), {r[0]: int(r[1]) for r in states}

    return asyncio.run(query())


def measure(spec: ServerSpec, round_no: int, manifest: Path, args: argparse.Namespace, nonce: str) -> Result:
    if spec.is_bmad:
        from github_app.db.engine import asyncpg_dsn

        pg(asyncpg_dsn(bench_database_url(args)), "TRUNCATE webhook_inbox")
    server = Server(spec, round_no, args)
    server.start()
    try:
        assert server.proc is not None
        prefix = f"{nonce}-{spec.key}-r{round_no}"
        warm = run_wrk(server.port, args.warmup, f"{prefix}-warm", manifest, args) if args.warmup else None
        with CpuSplit(server.proc.pid) as cpu:
            load = run_wrk(server.port, args.duration, prefix, manifest, args)
        rss, processes = tree_peak_rss_mib(server.proc.pid)
    finally:
        server.stop()
    statuses = {str(k): int(v) for k, v in load["statuses"].items()}
    good = sum(v for k, v in statuses.items() if k.startswith("2"))
    seconds = load["duration_us"] / 1e6
    result = Result(
        server=spec.key, round=round_no, rps=good / seconds,
        p50_ms=load["latency_us"]["p50"] / 1000, p99_ms=load["latency_us"]["p99"] / 1000,
        rss_mib=rss, processes=processes, sent=load["sent"], statuses=statuses,
        errors={k: v for k, v in load["errors"].items() if v},
        cpu={"server": cpu.server, "postgres": cpu.postgres, "wrk": cpu.wrk, "other": cpu.other},
    )
    result.sent = load["sent"] + (warm["sent"] if warm else 0)
    for run in (warm, load):
        if run:
            result.acked_202 += int(run["statuses"].get("202", 0))
            result.acked_200 += int(run["statuses"].get("200", 0))
    if spec.is_bmad:
        result.inbox_rows, result.inbox_states = inbox_rows(args)
    return result


# ------------------------------------------------------------------------------------------- report


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def round_line(r: Result, probot_rps: float | None) -> str:
    spec = next(s for s in SERVERS if s.key == r.server)
    ratio = f"  x{r.rps / probot_rps:.2f} vs Probot" if probot_rps else ""
    other = {k: v for k, v in r.statuses.items() if not k.startswith("2")}
    notes = []
    if other:
        notes.append(f"non-2xx {other}")
    if r.errors:
        notes.append(f"socket errors {r.errors}")
    if r.inbox_rows is not None:
        notes.append(f"acked 202={r.acked_202:,} 200={r.acked_200:,} inbox rows={r.inbox_rows:,} "
                     f"(done {r.inbox_states.get('done', 0):,}) missing={r.missing}")
    cpu = " ".join(f"{k} {v:.2f}" for k, v in r.cpu.items())
    return (f"  round {r.round}  {spec.label:<50} {fmt_int(r.rps):>7} req/s  p50 {r.p50_ms:6.2f} ms  "
            f"p99 {r.p99_ms:6.2f} ms  RSS {r.rss_mib:6.1f} MiB ({r.processes} proc)  cores: {cpu}{ratio}"
            + ("  " + "; ".join(notes) if notes else ""))


def report(
    results: list[Result], specs: list[ServerSpec], header: list[str], args: argparse.Namespace
) -> str:
    by_server = {s.key: [r for r in results if r.server == s.key] for s in specs}
    probot_by_round = {r.round: r.rps for r in by_server.get("probot", [])}
    probot_rss = median([r.rss_mib for r in by_server.get("probot", [])]) if "probot" in by_server else None
    probot_rps = median([r.rps for r in by_server.get("probot", [])]) if "probot" in by_server else None

    lines = list(header)
    lines += [
        "",
        f"Medians of {args.rounds} interleaved round(s); `req/s vs Probot` is the median of the per-round "
        "ratios (each round runs every server back to back, so the ratio survives drift between minutes).",
        "",
        "| server | req/s | p50 ms | p99 ms | RSS MiB | req/s vs Probot | baseline req/s (issue) "
        "| baseline p99 ms (issue) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for spec in specs:
        rows = by_server[spec.key]
        if not rows:
            continue
        rps, p50, p99 = (median([getattr(r, a) for r in rows]) for a in ("rps", "p50_ms", "p99_ms"))
        rss = median([r.rss_mib for r in rows])
        ratios = [r.rps / probot_by_round[r.round] for r in rows if probot_by_round.get(r.round)]
        ratio = f"{median(ratios):.2f}x" if ratios else "n/a"
        baseline = f"{spec.baseline_rps:,} ({spec.baseline})"
        lines.append(f"| {spec.label} | {fmt_int(rps)} | {p50:.1f} | {p99:.1f} | {rss:.0f} | {ratio} "
                     f"| {baseline} | {spec.baseline_p99} |")
        if spec.is_bmad and probot_rps:
            checks = [
                ("req/s >= Probot", ratios and median(ratios) >= 1.0),
                (f"p99 < {TARGET_P99_MS:.0f} ms", p99 < TARGET_P99_MS),
                ("RSS < Probot", probot_rss is not None and rss < probot_rss),
            ]
            met = all(ok for _, ok in checks)
            verdicts.append(f"- {spec.label}: target {'MET' if met else 'NOT met'} ("
                            + ", ".join(f"{name}: {'yes' if ok else 'no'}" for name, ok in checks) + ")")

    lines += [
        "",
        f"CPU while measuring, in cores of the machine's {os.cpu_count()} (medians): `other` is work that is "
        "not part of this benchmark; when it is not near 0 the figures above are disturbed.",
        "",
        "| server | server process tree | PostgreSQL | wrk | other |",
        "|---|---:|---:|---:|---:|",
    ]
    for spec in specs:
        rows = by_server[spec.key]
        if rows:
            cells = " | ".join(f"{median([r.cpu.get(k, 0.0) for r in rows]):.2f}"
                               for k in ("server", "postgres", "wrk", "other"))
            lines.append(f"| {spec.label} | {cells} |")

    bmad_results = [r for r in results if r.inbox_rows is not None]
    if bmad_results:
        lines += [
            "",
            "Nothing acknowledged is missing: deliveries answered 202 (warm-up and measurement, counted by "
            "the client) against `SELECT count(*) FROM webhook_inbox` after the server stopped. Rows may "
            "exceed the 202s by the requests still in flight when wrk stopped (stored, never answered).",
            "",
            "| server | round | sent | answered 202 | answered 200 | other / socket errors | rows in inbox "
            "| missing | processed by the worker when stopped |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|",
        ]
        for r in bmad_results:
            spec = next(s for s in SERVERS if s.key == r.server)
            other = {k: v for k, v in r.statuses.items() if not k.startswith("2")}
            problems = ", ".join(f"{k}: {v}" for k, v in (other | r.errors).items())
            lines.append(f"| {spec.label} | {r.round} | {r.sent:,} | {r.acked_202:,} | {r.acked_200:,} "
                         f"| {problems or 'none'} | {r.inbox_rows:,} | {r.missing} "
                         f"| {r.inbox_states.get('done', 0):,} |")
        total_missing = sum(r.missing or 0 for r in bmad_results)
        lines += ["", f"Acknowledged but missing from the inbox, all rounds: **{total_missing}**."]

    if verdicts:
        lines += ["", f"Target (issue 9): at least Probot's req/s at c{args.connections}, p99 under "
                  f"{TARGET_P99_MS:.0f} ms, RSS below Probot's.", *verdicts]

    lines += ["", "Baselines recorded in the issue on this machine (for reference):", "",
              "| server | req/s | p99 ms | RSS MiB |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | ~{rps:,} | {p99} | {rss} |" for name, rps, p99, rss in ISSUE_BASELINES]
    return "\n".join(lines) + "\n"


def summary(results: list[Result], specs: list[ServerSpec], args: argparse.Namespace) -> dict[str, object]:
    """The same figures for other scripts: one row of medians per server, and every round."""
    probot_by_round = {r.round: r.rps for r in results if r.server == "probot"}
    rows = []
    for spec in specs:
        mine = [r for r in results if r.server == spec.key]
        if not mine:
            continue
        ratios = [r.rps / probot_by_round[r.round] for r in mine if probot_by_round.get(r.round)]
        rows.append({
            "server": spec.label,
            "key": spec.key,
            "req_s": round(median([r.rps for r in mine])),
            "p50_ms": round(median([r.p50_ms for r in mine]), 2),
            "p99_ms": round(median([r.p99_ms for r in mine]), 2),
            "rss_mib": round(median([r.rss_mib for r in mine]), 1),
            "vs_probot": round(median(ratios), 3) if ratios else None,
            "missing": sum(r.missing or 0 for r in mine) if spec.is_bmad else None,
        })
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load": {"threads": args.threads, "connections": args.connections, "duration_s": args.duration,
                 "warmup_s": args.warmup, "rounds": args.rounds},
        "rows": rows,
        "rounds": [r.__dict__ | {"missing": r.missing} for r in results],
    }


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/ingress.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="measured seconds per server per round (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    p.add_argument("--quick", action="store_true", help="1 round of 3 s: a smoke run, not a measurement")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--max-requests", type=int, default=1_000_000,
                   help="each wrk thread stops after this many requests (default 1,000,000)")
    p.add_argument("--servers", default=",".join(s.key for s in SERVERS if not s.key.endswith("-ingress")),
                   help="comma-separated subset of: " + ", ".join(s.key for s in SERVERS))
    p.add_argument("--log-level", default="INFO", help="LOG_LEVEL for Probot and bmad-app (default INFO)")
    p.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help=f"a PostgreSQL database to connect to for creating {DATABASE} "
                        "(default postgresql://postgres@127.0.0.1:5432/postgres, or BENCH_PG_ADMIN_URL)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
    if args.rounds < 1 or not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        p.error("--rounds must be >= 1, --duration in (0, 600], --warmup in [0, 60]")
    known = {s.key for s in SERVERS}
    chosen = [k.strip() for k in args.servers.split(",") if k.strip()]
    if not chosen or set(chosen) - known:
        p.error(f"--servers: choose from {', '.join(sorted(known))}")
    args.servers = chosen
    host = args.pg_admin_url.split("@")[-1].split("/")[0].split(":")[0]
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        p.error("--pg-admin-url: the benchmark talks to a PostgreSQL on this machine only")
    return args


def main(argv: list[str] | None = None) -> int:
    ensure_venv_python()
    args = parse_args(argv)
    require_tools()
    WORK.mkdir(parents=True, exist_ok=True)
    specs = [s for s in SERVERS if s.key in args.servers]
    if any(s.key == "probot" for s in specs):
        install_probot()
    manifest, mean_body = write_deliveries()
    pg_settings = create_database(args) if any(s.is_bmad for s in specs) else {}
    nonce = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

    import aiohttp

    probot_pkg = PROBOT_DIR / "node_modules" / "probot" / "package.json"
    probot_version = json.loads(probot_pkg.read_text())["version"] if probot_pkg.exists() else "n/a"
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    header = [
        f"## Ingress benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- load: `wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s` after {args.warmup:g} s "
        f"of warm-up, {args.rounds} interleaved round(s); bodies in turn: "
        + ", ".join(f"{e}:{Path(r).stem.split('.')[0]}" for e, r in MIX)
        + f" (mean {mean_body:,} bytes), each signed, each request its own X-GitHub-Delivery",
        f"- machine: {os.cpu_count()} CPUs shared by wrk, the server and PostgreSQL; "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, Node {node_version}, "
        f"Probot {probot_version}",
    ]
    if pg_settings:
        header.append(f"- PostgreSQL {pg_settings['server_version']}: synchronous_commit="
                      f"{pg_settings['synchronous_commit']}, fsync={pg_settings['fsync']}, "
                      f"shared_buffers={pg_settings['shared_buffers']}; database `{DATABASE}` created afresh")
    header.append(f"- server logs: LOG_LEVEL={args.log_level.upper()}, written to bench/.work/logs/")
    print("\n".join(header), flush=True)

    results: list[Result] = []
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(specs)
        order = specs[shift:] + specs[:shift]  # each server takes each position in turn
        print(f"\nround {round_no}/{args.rounds}: " + ", ".join(s.key for s in order), flush=True)
        for spec in order:
            result = measure(spec, round_no, manifest, args, nonce)
            results.append(result)
            probot = next((r.rps for r in results if r.server == "probot" and r.round == round_no), None)
            print(round_line(result, probot if spec.key != "probot" else None), flush=True)
        probot = next((r.rps for r in results if r.server == "probot" and r.round == round_no), None)
        if probot:
            print(f"  round {round_no} vs Probot: " + ", ".join(
                f"{r.server} x{r.rps / probot:.2f}" for r in results if r.round == round_no), flush=True)

    text = report(results, specs, header, args)
    out = WORK / "ingress-results.md"
    out.write_text(text)
    (WORK / "ingress-results.json").write_text(json.dumps(summary(results, specs, args), indent=2, default=str))
    print("\n" + text.split("\n", len(header))[-1].lstrip("\n"))
    print(f"written to {out.relative_to(REPO)}")
    missing = sum(r.missing or 0 for r in results)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
