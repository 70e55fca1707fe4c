"""What clients without the secret cost `bmad-app serve`: the attacks of the endpoint's threat table,
scaled to run in about a minute, against the real server on SQLite, on 127.0.0.1 only.

    python bench/hostile.py

Prints, for each attack, what the server spent (CPU seconds, peak and settled RSS, bytes of log and of
/metrics) and whether `/healthz` and a signed delivery still got through meanwhile.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-0123456789"
PATH = "/api/github/webhooks"
BODY = (REPO / "tests/fixtures/github-webhooks/push/payload.json").read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def head(
    length: int, *, event: str = "push", delivery: str | None = None, signature: str | None = None, extra: str = ""
) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nX-GitHub-Event: {event}\r\n"
        f"X-GitHub-Delivery: {delivery or uuid.uuid4()}\r\n"
        f"X-Hub-Signature-256: {signature or 'sha256=' + '0' * 64}\r\n{extra}\r\n"
    ).encode()


def signed(body: bytes) -> bytes:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return head(len(body), signature=f"sha256={digest}") + body


async def exchange(port: int, data: bytes, timeout: float = 10.0) -> int:
    """Send one request, return its status (0: no answer in time)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(data)
        line = await asyncio.wait_for(reader.readline(), timeout)
        writer.close()
        return int(line.split()[1]) if line else 0
    except (TimeoutError, OSError, IndexError, ValueError):
        return 0


def proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return (int(fields[11]) + int(fields[12])) / ticks, rss


async def still_serving(port: int) -> str:
    health = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    delivery = await exchange(port, signed(BODY))
    return f"/healthz {health or 'no answer'}, delivery {delivery or 'no answer'}"


async def attacks(port: int, pid: int, log_path: Path) -> list[tuple[str, str]]:
    rows = []

    # 1. Many connections that send one byte and wait.
    held = []
    for _ in range(3000):
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"P")
            held.append(w)
        except OSError:
            break
    rows.append((f"{len(held)} connections sending one byte and waiting", await still_serving(port)))
    for w in held:
        w.close()

    # 2. A gzip body of about 1 MB that inflates to 1 GiB, any signature.
    bomb = gzip.compress(b"\0" * (1024 * 1024 * 1024), compresslevel=9)
    cpu0, _ = proc_stat(pid)
    status = await exchange(port, head(len(bomb), extra="Content-Encoding: gzip\r\n") + bomb)
    cpu1, _ = proc_stat(pid)
    rows.append((f"gzip bomb of {len(bomb) / 2**20:.1f} MB", f"answered {status}, {cpu1 - cpu0:.2f} CPU s"))

    # 3. Random event names with a bad signature: /metrics must not grow.
    statuses = await asyncio.gather(
        *(exchange(port, head(len(BODY), event=f"e{uuid.uuid4().hex[:16]}") + BODY) for _ in range(2000))
    )
    metrics = await asyncio.open_connection("127.0.0.1", port)
    metrics[1].write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    page = await metrics[0].read()
    rows.append(
        (f"2,000 random event names ({statuses.count(401)} answered 401)", f"/metrics {len(page) / 1024:.0f} KiB")
    )

    # 4. 8,000-character delivery ids and event names with a bad signature.
    before = log_path.stat().st_size
    long = "x" * 8000
    statuses = await asyncio.gather(*(exchange(port, head(len(BODY), delivery=long) + BODY) for _ in range(1000)))
    await asyncio.sleep(0.5)  # the log is flushed every quarter second
    rows.append(
        (
            f"1,000 requests with an 8,000-character X-GitHub-Delivery ({statuses.count(400)} answered 400)",
            f"log grew {(log_path.stat().st_size - before) / 1024:.0f} KiB",
        )
    )

    # 5. Clients hanging up mid-body.
    before = log_path.stat().st_size
    for _ in range(200):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(head(10_000) + b'{"action": ')
        await w.drain()
        w.transport.abort()
    await asyncio.sleep(0.5)
    rows.append(("200 clients hanging up mid-body", f"log grew {(log_path.stat().st_size - before) / 1024:.1f} KiB"))

    # 6. 40 connections each sending 20 MB of a body, then stalling.
    _, rss0 = proc_stat(pid)
    chunk = b" " * (1024 * 1024)
    writers = []
    for _ in range(40):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(head(25 * 1024 * 1024))
        writers.append(w)
    for _ in range(20):
        for w in writers:
            if not w.is_closing():
                w.write(chunk)
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    _, peak = proc_stat(pid)
    serving = await still_serving(port)
    await asyncio.sleep(13)  # past the stall timeout, and the trim a second after
    _, settled = proc_stat(pid)
    for w in writers:
        w.close()
    rows.append(
        (
            "40 connections sending 20 MB each, then stalling",
            f"RSS {rss0:.0f} MiB before, {peak:.0f} MiB during ({serving}), {settled:.0f} MiB 13 s later",
        )
    )
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite+aiosqlite:///{tmp}/hostile.sqlite3"
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env |= {"DATABASE_URL": db, "GITHUB_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "INFO"}
        bmad = str(Path(sys.executable).parent / "bmad-app")
        subprocess.run(
            [bmad, "db", "upgrade"], env=env, cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        port = free_port()
        log_path = Path(tmp) / "serve.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen([bmad, "serve"], env=env | {"PORT": str(port)}, cwd=tmp, stderr=log)
            try:
                deadline = time.monotonic() + 60
                while not asyncio.run(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1)):
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("bench: the server did not start")
                    time.sleep(0.2)
                rows = asyncio.run(attacks(port, server.pid, log_path))
            finally:
                server.terminate()
                server.wait(30)
    print(
        json.dumps(dict(rows), indent=1)
        if "--json" in sys.argv
        else "\n".join(["| attack | cost to the server |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
