"""The webhook endpoint under attack, over real sockets against `run_server`: what a client without the
secret (and one with it, sending hostile JSON) can cost the server. Each attack is scaled down through
the settings (a cap of 50 connections instead of 1024, timeouts under a second) so that it stays small
and quick; every wait is for a condition, with a deadline."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from github_app.config import Settings
from github_app.db.types import utcnow
from github_app.http_limits import GuardedRunner, HttpLimits
from github_app.logs import TextFormatter
from github_app.runtime import Runtime
from github_app.server import open_writer, run_server
from github_app.web import WEBHOOK_PATH
from github_app.webhook import Delivery
from tests.conftest import WEBHOOK_SECRET, fetch_all, make_settings
from tests.deliveries import encode, guid, headers_for, payload
from tests.harness import App
from tests.waits import until

DEADLINE = 5.0  # seconds any one wait may take; the limits under test are all well under it
PUSH = encode(payload("push"))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Served:
    port: int
    settings: Settings
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def deliver(
        self, event: str = "push", body: bytes = PUSH, secret: str | None = WEBHOOK_SECRET, **extra: str
    ) -> tuple[int, str]:
        headers = headers_for(event, body, secret) | extra
        async with self.session.post(self.url + WEBHOOK_PATH, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def metric(self, name: str, **labels: str) -> float:
        _, text = await self.get("/metrics")
        return metric_value(text, name, **labels)

    async def inbox(self) -> list[tuple[object, ...]]:
        runtime = await Runtime.create(self.settings)
        try:
            return await fetch_all(runtime, "SELECT delivery_id, event FROM webhook_inbox")
        finally:
            await runtime.close()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sample's value, 0 when the series does not exist."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")):
            series, _, value = line.rpartition(" ")
            got = series[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(value)
    return 0.0


@asynccontextmanager
async def serving(db_url: str, **limits: Any) -> AsyncIterator[Served]:
    """`run_server` as `serve` runs it (no worker), on a free port of 127.0.0.1."""
    settings = make_settings(db_url, host="127.0.0.1", port=0, **limits)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started: asyncio.Future[int] = loop.create_future()
    task = asyncio.create_task(run_server(settings, with_worker=False, stop=stop, started=started.set_result))
    done, _ = await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if started not in done:
        stop.set()
        await task  # raises what stopped it
        pytest.fail("the server did not start")
    connector = aiohttp.TCPConnector(force_close=True)  # the test's own requests hold no idle connection
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session:
        try:
            yield Served(started.result(), settings, session)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@dataclass
class Raw:
    """One connection driven byte by byte."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int, first: bytes = b"") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        if first:
            await raw.send(first)
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        body = await asyncio.wait_for(self.reader.readexactly(int(length.group(1))), DEADLINE) if length else b""
        return status, body

    async def closed_by_server(self) -> bool:
        """Waits until the server closes the connection (True), or DEADLINE passes (False)."""
        try:
            async with asyncio.timeout(DEADLINE):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


def webhook_head(
    body_length: int,
    *,
    event: str = "push",
    delivery: str | None = None,
    signature: str = "sha256=" + "0" * 64,
    **extra: str,
) -> bytes:
    headers = {
        "Host": "127.0.0.1",
        "Content-Type": "application/json",
        "Content-Length": str(body_length),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    } | extra
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {WEBHOOK_PATH} HTTP/1.1\r\n{lines}\r\n".encode()


# --------------------------------------------------------------------- connections: time and number


async def test_a_connection_that_does_not_complete_its_headers_is_closed(db_url: str) -> None:
    async with serving(db_url, http_header_timeout_seconds=0.3, http_idle_timeout_seconds=60) as served:
        before = await served.metric("http_connections_closed_total", reason="header_timeout")
        silent = await Raw.open(served.port)
        one_byte = await Raw.open(served.port, b"P")
        half = await Raw.open(served.port, webhook_head(10)[:60])
        for conn in (silent, one_byte, half):
            assert await conn.closed_by_server()
        assert await served.metric("http_connections_closed_total", reason="header_timeout") == before + 3
        assert (await served.get("/healthz"))[0] == 200


async def test_an_idle_keep_alive_connection_is_closed(db_url: str) -> None:
    async with serving(db_url, http_idle_timeout_seconds=0.3, http_header_timeout_seconds=60) as served:
        conn = await Raw.open(served.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await conn.response())[0] == 200  # kept alive: HTTP/1.1 and no Connection: close
        assert await conn.closed_by_server()


async def test_a_stalled_body_is_answered_408_and_its_bytes_given_back(db_url: str) -> None:
    async with serving(db_url, http_body_stall_seconds=0.3) as served:
        conn = await Raw.open(served.port, webhook_head(1000) + b'{"action": "op')
        status, body = await conn.response()
        assert (status, b"body stalled" in body) == (408, True)
        assert await conn.closed_by_server()
        assert await served.metric("http_body_bytes_in_flight") == 0
        assert (await served.deliver())[0] == 202  # the server is fine


async def test_a_body_trickled_past_its_deadline_is_answered_408(db_url: str) -> None:
    async with serving(db_url, http_body_stall_seconds=5, http_body_timeout_seconds=0.3) as served:
        conn = await Raw.open(served.port, webhook_head(1000))
        status = None
        for _ in range(200):  # a byte every 20 ms never stalls, but never finishes either
            await conn.send(b" ")
            try:
                status, body = await asyncio.wait_for(conn.response(), 0.02)
                break
            except TimeoutError:
                continue
        assert (status, b"not complete in time" in body) == (408, True)
        conn.close()


async def test_past_the_connection_cap_idle_clients_make_room_for_health_and_deliveries(db_url: str) -> None:
    """20,000 one-byte connections exhausted the file limit; here the limit is set low (what the server
    uses plus 320) and 400 connections from another process would exhaust it without the cap of 50."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 320, hard))
    try:
        async with serving(db_url, http_max_connections=50, http_header_timeout_seconds=60) as served:
            closed_before = await served.metric("http_connections_closed_total", reason="over_capacity")
            attacker = subprocess.Popen(
                [sys.executable, "-m", "tests.idle_clients", str(served.port), "400"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=REPO_ROOT,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
            )
            try:
                assert attacker.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(attacker.stdout.readline), 30)
                assert line == b"connected 400\n"
                assert (await served.get("/healthz"))[0] == 200
                assert (await served.deliver())[0] == 202

                async def all_seen() -> bool:
                    # Every attacker connection accepted (some wait in the listen backlog for a while),
                    # and all but the newest 50 closed to make room.
                    return (
                        await served.metric("http_connections_closed_total", reason="over_capacity")
                        >= closed_before + 350
                    )

                await until(all_seen, what="the oldest idle connections are closed", seconds=DEADLINE)
                assert await served.metric("http_connections_open") <= 50
            finally:
                attacker.communicate(timeout=30)  # closes its stdin: it lets go and exits
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------ refused before the body is read


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
async def test_a_compressed_body_is_415_before_a_byte_of_it_is_read(db_url: str, encoding: str) -> None:
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)  # 32 KiB that inflate to 32 MiB
    async with serving(db_url) as served:
        # Headers only: the body never comes, so an answer proves nothing waited for it.
        conn = await Raw.open(served.port, webhook_head(len(bomb), **{"Content-Encoding": encoding}))
        status, body = await conn.response()
        assert (status, b"Content-Encoding" in body) == (415, True)
        conn.close()
        # Signed, and sent whole: still refused, nothing stored.
        signed = headers_for("push", bomb, WEBHOOK_SECRET) | {"Content-Encoding": encoding}
        async with served.session.post(served.url + WEBHOOK_PATH, data=bomb, headers=signed) as resp:
            assert resp.status == 415
        assert await served.inbox() == []


async def test_identity_encoding_is_accepted(db_url: str) -> None:
    async with serving(db_url) as served:
        assert (await served.deliver(**{"Content-Encoding": "identity"}))[0] == 202


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-GitHub-Delivery", "x" * 8000),
        ("X-GitHub-Delivery", "not-a-guid"),
        ("X-GitHub-Delivery", "9a351d4a-3834-4b26-b3d7-8c9594bb92610"),
        ("X-GitHub-Event", "e" * 8000),
        ("X-GitHub-Event", "Push"),
        ("X-GitHub-Event", "push;drop"),
        ("X-GitHub-Event", "a" * 65),
    ],
)
async def test_headers_github_never_sends_are_400_before_the_body_and_logged_by_a_short_prefix(
    db_url: str, header: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(db_url) as served:
        extra = {"delivery": value} if header == "X-GitHub-Delivery" else {"event": value}
        conn = await Raw.open(served.port, webhook_head(len(PUSH), **extra))  # the body never comes
        status, body = await conn.response()
        assert (status, header.encode() in body) == (400, True)
        conn.close()
    lines = [TextFormatter().format(r) for r in caplog.records if r.name.startswith("github_app")]
    assert any("delivery rejected" in line for line in lines)
    assert all(len(line) < 400 for line in lines), max(lines, key=len)
    assert value[:41] not in "".join(lines) or len(value) <= 40


async def test_event_names_outside_githubs_list_share_one_metric_series(db_url: str) -> None:
    async with serving(db_url) as served:
        before = await served.metric("webhook_deliveries_received_total", event="other", outcome="bad_signature")
        names = [f"probe_{uuid.uuid4().hex[:12]}" for _ in range(30)]
        for name in names:
            assert (await served.deliver(name, secret="not-the-secret"))[0] == 401
        _, text = await served.get("/metrics")
        assert not [name for name in names if name in text]
        after = metric_value(text, "webhook_deliveries_received_total", event="other", outcome="bad_signature")
        assert after - before == 30
        # A known event keeps its own series.
        pushes = await served.metric("webhook_deliveries_received_total", event="push", outcome="accepted")
        assert (await served.deliver("push"))[0] == 202
        assert await served.metric("webhook_deliveries_received_total", event="push", outcome="accepted") == pushes + 1
        assert await served.metric("webhook_deliveries_received_total", event="other", outcome="bad_signature") == after


# --------------------------------------------------------------------------------- clients that go


async def test_a_client_that_hangs_up_mid_body_is_one_info_line(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with serving(db_url) as served:
        conn = await Raw.open(served.port, webhook_head(10_000) + b'{"action": ')
        before = await served.metric("webhook_deliveries_received_total", event="push", outcome="client_gone")
        conn.writer.transport.abort()

        async def counted() -> bool:
            now = await served.metric("webhook_deliveries_received_total", event="push", outcome="client_gone")
            return now > before

        await until(counted, what="the hang-up is counted", seconds=DEADLINE)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in gone] == [(logging.INFO, None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_malformed_request_is_400_without_an_error_or_a_traceback(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(db_url) as served:
        conn = await Raw.open(served.port, b"POST /api/github/webhooks HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        assert (await conn.response())[0] == 400
        conn.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# ---------------------------------------------------------------------------------------- memory


async def test_bodies_in_flight_are_bounded_in_total_and_given_back(db_url: str) -> None:
    """40 connections each sending 20 MB and stalling took 1.2 GiB; here 8 connections each send
    200 KB of a 400 KB body against a budget of 1 MiB: those past it are refused at once, the others
    when they stall, and every byte is given back."""
    chunk = b" " * (200 * 1024)
    async with serving(db_url, http_body_budget_bytes=1024 * 1024, http_body_stall_seconds=0.5) as served:
        conns = [await Raw.open(served.port, webhook_head(2 * len(chunk))) for _ in range(8)]
        for conn in conns:
            conn.writer.write(chunk)  # not drained: a refused connection stops reading
        statuses = sorted([(await conn.response())[0] for conn in conns])
        assert set(statuses) == {408, 503}, statuses  # stalled, or over the budget
        assert statuses.count(503) >= 3  # 8 x 200 KB do not fit in 1 MiB
        for conn in conns:
            conn.close()
        assert await served.metric("http_body_bytes_in_flight") == 0
        assert (await served.deliver())[0] == 202


# ------------------------------------------------------------------------------ signed hostile JSON


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested more than 1024 levels"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested more than 1024 levels"),
        (b'{"installation": {"id": 123456789012345678901234567890}}', "does not fit in 64 bits"),
        (b'{"action": -99999999999999999999}', "does not fit in 64 bits"),
        (b'{"action": 1e400}', "not valid JSON"),
        (b'{"action": "\xff"}', "not UTF-8"),
        (b'{"action": "opened"', "not valid JSON"),
        (b'{"action": NaN}', "not valid JSON"),
    ],
)
async def test_signed_hostile_json_is_400_with_a_short_reason(
    db_url: str, body: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(db_url) as served:
        status, answer = await served.deliver("push", body)
        assert (status, reason in answer, len(answer) < 120) == (400, True, True), answer
        assert await served.inbox() == []
        assert (await served.deliver())[0] == 202  # and the next one is fine
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_worker_sets_hostile_json_aside_and_goes_on(app: App) -> None:
    """Rows the ingress now refuses may be in an inbox from before: the worker marks each dead with its
    reason, after a bounded number of attempts, and handles the next delivery as usual."""
    writer = await open_writer(app.runtime)
    huge_installation = payload("installation", "created.payload.json")
    huge_installation["installation"]["id"] = 10**30
    hostile = {
        guid("deep"): ("push", b"[" * 100_000 + b"]" * 100_000),
        guid("huge-installation"): ("installation", encode(huge_installation)),
        guid("not-json"): ("push", b'{"action": '),
    }
    try:
        await writer.insert_batch(
            [Delivery(i, event, None, None, None, body, utcnow()) for i, (event, body) in hostile.items()]
        )
    finally:
        await writer.close()
    await asyncio.wait_for(app.process(), 60)
    rows = await fetch_all(app.runtime, "SELECT delivery_id, state, attempts, last_error FROM webhook_inbox")
    assert {r[0]: r[1] for r in rows} == dict.fromkeys(hostile, "dead"), rows
    assert all(len(str(r[3])) < 2000 for r in rows)
    assert await app.deliver("installation", payload("installation", "created.payload.json")) == 202
    [(state,)] = await fetch_all(
        app.runtime,
        "SELECT state FROM webhook_inbox WHERE delivery_id NOT IN (:a, :b, :c)",
        a=guid("deep"),
        b=guid("huge-installation"),
        c=guid("not-json"),
    )
    assert state == "done"


async def test_refusals_beyond_twenty_a_second_are_counted_not_logged(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(db_url) as served:
        # At once, so that most of them fall within one second.
        answers = await asyncio.gather(*(served.deliver(secret="not-the-secret") for _ in range(100)))
        assert {status for status, _ in answers} == {401}
        second = int(time.monotonic())

        async def next_second() -> bool:
            return int(time.monotonic()) != second

        await until(next_second, what="a new second", seconds=DEADLINE)
        assert (await served.deliver(secret="not-the-secret"))[0] == 401  # logged, and tells what was not
    logged = [r for r in caplog.records if r.getMessage() == "delivery rejected"]
    held_back = sum(getattr(r, "count", 0) for r in caplog.records if "not logged" in r.getMessage())
    assert len(logged) < 101 and held_back > 0
    assert len(logged) + held_back == 101


async def test_the_server_never_inflates_a_body_whatever_the_handler_reads() -> None:
    """Under any route, not only the webhook's: aiohttp would otherwise inflate a gzip body as it
    arrives, before a handler could refuse it."""

    async def length(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    app = web.Application()
    app.router.add_post("/length", length)
    runner = GuardedRunner(app, HttpLimits())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session,
            session.post(f"http://127.0.0.1:{port}/length", data=bomb, headers={"Content-Encoding": "gzip"}) as resp,
        ):
            assert await resp.text() == str(len(bomb))
    finally:
        await runner.cleanup()
