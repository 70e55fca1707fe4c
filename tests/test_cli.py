"""The command line as an operator uses it: a real process, real environment, real database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from github_app.inbox.worker import Worker
from github_app.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL, make_settings
from tests.test_worker import inbox, recording_router, store_deliveries

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "DATABASE_URL", "PORT", "HOST", "LOG_", "WORKER_", "WEB_"))
    }
    env.update({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def bmad_app(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "github_app", *args],
        env=env,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_version_and_help(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert bmad_app("--version", env=env).stdout.strip() == "bmad-app 0.1.0"
    out = bmad_app("--help", env=env).stdout
    for command in ("serve", "worker", "db", "deliveries"):
        assert command in out


def test_invalid_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = bmad_app("db", "current", env=clean_env(tmp_path, PORT="eighty"))
    assert result.returncode == 2
    assert "PORT: must be a port number from 1 to 65535, got 'eighty'" in result.stderr


def test_serve_with_no_configuration_answers_health_and_readiness(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, PORT=str(port))  # nothing else: SQLite in the per-user data directory
    proc = subprocess.Popen(
        [sys.executable, "-m", "github_app", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.1)
        assert status == 200
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, {"status": "ready"})
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert out.count("GitHub is not fully configured; missing: GITHUB_APP_ID") == 1
    assert (tmp_path / "data" / "bmad-marketplace-app" / "bmad-app.sqlite3").exists()
    # The migrations it ran are on record; alembic's own set-up chatter is not.
    assert "Running upgrade  -> 0001_seed_schema" in out
    assert "plugin" not in out and "Context impl" not in out and "Will assume" not in out


def test_db_commands(tmp_path: Path) -> None:
    if TEST_DATABASE_URL:
        pytest.skip("exercised on SQLite; PostgreSQL migrations are covered by test_schema")
    env = clean_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert "database: (empty)" in bmad_app("db", "current", env=env).stdout
    assert "run: bmad-app db upgrade" in bmad_app("db", "check", env=env).stdout
    assert bmad_app("db", "check", env=env).returncode == 1
    assert bmad_app("db", "upgrade", env=env).returncode == 0
    assert bmad_app("db", "check", env=env).returncode == 0
    current = bmad_app("db", "current", env=env).stdout
    assert "run: bmad-app db upgrade" not in current
    assert bmad_app("db", "downgrade", "base", env=env).returncode == 0
    assert "database: (empty)" in bmad_app("db", "current", env=env).stdout


def test_alembic_from_the_repository_root(tmp_path: Path) -> None:
    if TEST_DATABASE_URL:
        pytest.skip("exercised on SQLite")
    env = clean_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'alembic.sqlite3'}")
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run(
        [str(alembic), "upgrade", "head"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    from github_app.db.migrate import head_revision

    assert f"database: {head_revision()}" in bmad_app("db", "current", env=env).stdout


async def test_deliveries_list_show_retry(runtime: Runtime, tmp_path: Path) -> None:
    ids = await store_deliveries(runtime, 2)
    failing = await Runtime.create(make_settings(runtime.settings.database_url, worker_max_attempts=1))
    try:
        await Worker(failing, recording_router(fail_times=1)).run_until_idle()
    finally:
        await failing.close()
    env = clean_env(tmp_path, DATABASE_URL=runtime.settings.database_url)

    listing = await asyncio.to_thread(bmad_app, "deliveries", "list", "--state", "dead", env=env)
    assert listing.returncode == 0
    assert ids[0] in listing.stdout and "GitHub said 502" in listing.stdout

    shown = await asyncio.to_thread(bmad_app, "deliveries", "show", ids[0], env=env)
    assert "refs/heads/main" in shown.stdout and "dead" in shown.stdout
    missing = await asyncio.to_thread(bmad_app, "deliveries", "show", "no-such-id", env=env)
    assert missing.returncode == 1 and "no delivery 'no-such-id'" in missing.stderr

    retried = await asyncio.to_thread(bmad_app, "deliveries", "retry", ids[0], env=env)
    assert retried.returncode == 0, retried.stderr
    assert (await inbox(runtime))[ids[0]][:2] == ("pending", 0)


async def test_serve_on_postgresql_processes_in_a_separate_worker_process(db_url: str, tmp_path: Path) -> None:
    """On PostgreSQL `serve` runs its worker as a child process, woken by the ingress's NOTIFY; SIGTERM
    stops every process it started."""
    if not TEST_DATABASE_URL:
        pytest.skip("the separate worker process is the PostgreSQL layout")
    import uuid

    import aiohttp

    from tests.conftest import WEBHOOK_SECRET
    from tests.deliveries import encode, headers_for, payload

    port = free_port()
    env = clean_env(
        tmp_path, PORT=str(port), DATABASE_URL=db_url, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET, WORKER_POLL_SECONDS="30"
    )  # a 30 s poll: only the NOTIFY can wake it in time
    proc = subprocess.Popen(
        [sys.executable, "-m", "github_app", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runtime = await Runtime.create(make_settings(db_url))
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                await asyncio.sleep(0.1)
            # Until the worker child LISTENs, a NOTIFY would reach nobody: wait for its connection to say so.
            listening = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
            )
            deadline = time.monotonic() + 60
            while not await runtime_scalar(runtime, listening):
                assert time.monotonic() < deadline and proc.poll() is None, "the worker child never listened"
                await asyncio.sleep(0.05)
            body = encode(payload("installation", "created.payload.json"))
            delivery = str(uuid.uuid4())
            async with http.post(
                f"http://127.0.0.1:{port}/api/github/webhooks",
                data=body,
                headers=headers_for("installation", body, WEBHOOK_SECRET, delivery),
            ) as r:
                assert r.status == 202
        deadline = time.monotonic() + 10
        while (await inbox(runtime)).get(delivery, ("pending",))[0] != "done":
            assert time.monotonic() < deadline, "the worker process did not pick the delivery up"
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:  # one page for every process: the worker's work shows
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                page = await r.text()
        # A fresh serve: its processes' counters start at zero, so exactly one delivery shows as one.
        assert 'webhook_deliveries_processed_total{event="installation",outcome="done"} 1.0' in page
        assert 'webhook_deliveries_received_total{event="installation",outcome="accepted"} 1.0' in page
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        # The worker is serve's one child: no helper process (such as multiprocessing's resource tracker).
        assert len(children) == 1, f"serve's children: {children}"
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, out
        # The worker finishes its shutdown on its own once serve has exited: give it a moment.
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        proc.kill()
        await runtime.close()


async def runtime_scalar(runtime: Runtime, sql: str) -> object:
    from sqlalchemy import text

    async with runtime.engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def _alive(pid: str) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
