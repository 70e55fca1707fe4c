"""Missed-delivery recovery against the fake GitHub's delivery log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from github_app.demo.fake_github import FakeGitHub
from github_app.inbox.recovery import recover_once
from github_app.runtime import Runtime
from tests.github_fixtures import GITHUB_APP_ID, KeyPair
from tests.test_cli import clean_env
from tests.test_worker import store_deliveries
from tests.waits import until

ROOT = Path(__file__).resolve().parent.parent


def seed_log(fake: FakeGitHub) -> None:
    now = datetime.now(UTC)
    fake.add_delivery("lost-1", status_code=502)  # failed, never stored: redeliver
    fake.add_delivery("d-0000", status_code=503)  # failed at GitHub's end, but we have it: skip
    fake.add_delivery("fine-1", status_code=202)  # delivered: skip
    fake.add_delivery("retried-ok", status_code=500)
    fake.add_delivery("retried-ok", status_code=202, redelivery=True)  # a later attempt worked: skip
    fake.add_delivery("ancient", status_code=500, delivered_at=now - timedelta(days=2))  # out of window


async def test_recover_redelivers_only_failed_deliveries_missing_from_the_inbox(
    app_runtime: Runtime, fake_github: FakeGitHub
) -> None:
    await store_deliveries(app_runtime, 1)  # holds d-0000
    seed_log(fake_github)
    report = await recover_once(app_runtime, timedelta(hours=24))
    assert report is not None
    assert report.redelivered_guids == ["lost-1"]
    assert report.already_known == 1
    assert len(fake_github.redelivery_attempts) == 1


async def test_recover_command(
    runtime: Runtime, fake_github: FakeGitHub, github_app_keys: KeyPair, tmp_path: Path
) -> None:
    seed_log(fake_github)
    env = clean_env(
        tmp_path,
        DATABASE_URL=runtime.settings.database_url,
        GITHUB_APP_ID=str(GITHUB_APP_ID),
        GITHUB_PRIVATE_KEY=github_app_keys.private_pem,
        GITHUB_API_URL=fake_github.url,
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "github_app", "deliveries", "recover", "--since", "24h"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "redelivery requested: lost-1" in result.stdout
    assert "redelivery requested: d-0000" in result.stdout  # this inbox is empty
    assert len(fake_github.redelivery_attempts) == 2
    assert github_app_keys.private_pem.splitlines()[1] not in result.stdout + result.stderr


async def test_recover_without_credentials_says_what_is_missing(runtime: Runtime, tmp_path: Path) -> None:
    env = clean_env(tmp_path, DATABASE_URL=runtime.settings.database_url)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "github_app", "deliveries", "recover"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "set GITHUB_APP_ID and GITHUB_PRIVATE_KEY" in result.stderr


async def test_the_worker_recovers_periodically_when_configured(app_runtime: Runtime, fake_github: FakeGitHub) -> None:
    import dataclasses

    from github_app.inbox.recovery import periodic_recovery

    seed_log(fake_github)
    app_runtime.settings = dataclasses.replace(app_runtime.settings, recover_interval_minutes=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(periodic_recovery(app_runtime, stop))

    def scans() -> int:  # each pass reads GitHub's delivery log once
        return len([r for r in fake_github.requests if r.method == "GET" and r.path == "/app/hook/deliveries"])

    def attempted() -> set[int]:
        assert not task.done(), "periodic recovery stopped"
        return set(fake_github.redelivery_attempts)

    # First pass: lost-1 and d-0000 (this inbox is empty), the two failed deliveries missing from it.
    await until(lambda: len(attempted()) == 2, what="the first pass's redeliveries")
    first_scans = scans()
    # A delivery that fails after that pass is found by a later one: the loop goes on.
    later = fake_github.add_delivery("lost-later", status_code=502)
    await until(lambda: later["id"] in attempted(), what="a later pass finding the new failure")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(set(fake_github.redelivery_attempts)) == 3
    assert first_scans >= 1 and scans() > first_scans  # two passes at least, each reading the log
