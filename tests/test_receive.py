"""`bmad-app receive`: a payload file, signed with the configured secret, delivered to a running app
over HTTP or processed in-process with `--local`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from github_app.runtime import Runtime
from tests.conftest import WEBHOOK_SECRET, fetch_all
from tests.deliveries import guid, payload
from tests.harness import App
from tests.test_cli import bmad_app, clean_env

SUPPORT_CASE = guid("support-case-1")
LOCAL_CASE = guid("local-1")


def payload_file(tmp_path: Path, event: str = "installation", name: str = "created.payload.json") -> Path:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload(event, name)))
    return path


async def inbox_rows(runtime: Runtime) -> dict[str, tuple[object, ...]]:
    rows = await fetch_all(runtime, "SELECT delivery_id, event, action, state FROM webhook_inbox")
    return {str(r[0]): r[1:] for r in rows}


async def test_receive_signs_and_posts_to_the_running_app(app: App, tmp_path: Path) -> None:
    url = str(app.client.make_url("/"))
    env = clean_env(tmp_path, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET)
    result = await asyncio.to_thread(
        bmad_app, "receive", "--event", "installation", str(payload_file(tmp_path)), "--url", url,
        "--delivery", SUPPORT_CASE, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{SUPPORT_CASE}: 202 stored"
    assert (await inbox_rows(app.runtime))[SUPPORT_CASE] == ("installation", "created", "pending")
    await app.process()
    assert (await inbox_rows(app.runtime))[SUPPORT_CASE][2] == "done"

    again = await asyncio.to_thread(
        bmad_app, "receive", "--event", "installation", str(payload_file(tmp_path)), "--url", url,
        "--delivery", SUPPORT_CASE, env=env,
    )  # fmt: skip
    assert again.returncode == 0 and again.stdout.strip() == f"{SUPPORT_CASE}: 200 already stored"


async def test_a_secret_the_app_does_not_know_is_refused_and_nothing_is_stored(app: App, tmp_path: Path) -> None:
    url = str(app.client.make_url("/api/github/webhooks"))
    env = clean_env(tmp_path, GITHUB_WEBHOOK_SECRET="not-the-apps-secret")
    result = await asyncio.to_thread(
        bmad_app, "receive", "--event", "installation", str(payload_file(tmp_path)), "--url", url, env=env
    )
    assert result.returncode == 1
    assert result.stdout.strip().endswith(": 401 signature does not match")
    assert await inbox_rows(app.runtime) == {}


def test_bad_input_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    env = clean_env(tmp_path, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET)
    not_json = tmp_path / "broken.json"
    not_json.write_text("{nope")
    result = bmad_app("receive", "--event", "push", str(not_json), "--url", "http://127.0.0.1:9", env=env)
    assert result.returncode == 1 and "is not JSON" in result.stderr
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    result = bmad_app("receive", "--event", "push", str(listed), "--url", "http://127.0.0.1:9", env=env)
    assert result.returncode == 1 and "is not a JSON object" in result.stderr
    not_guid = bmad_app("receive", "--event", "push", str(payload_file(tmp_path)), "--delivery", "case-7", env=env)
    assert not_guid.returncode == 1 and "--delivery must be a GUID" in not_guid.stderr
    result = bmad_app("receive", "--event", "push", str(tmp_path / "missing.json"), env=env)
    assert result.returncode == 1 and "cannot read" in result.stderr
    unsigned = bmad_app(
        "receive", "--event", "push", str(payload_file(tmp_path, "push", "payload.json")), env=clean_env(tmp_path)
    )
    assert unsigned.returncode == 1 and "GITHUB_WEBHOOK_SECRET is not set" in unsigned.stderr


async def test_local_processes_it_in_process_with_no_server(runtime: Runtime, tmp_path: Path) -> None:
    env = clean_env(tmp_path, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET, DATABASE_URL=runtime.settings.database_url)
    result = await asyncio.to_thread(
        bmad_app, "receive", "--event", "installation", str(payload_file(tmp_path)), "--local",
        "--delivery", LOCAL_CASE, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{LOCAL_CASE}: 200 processed"
    assert (await inbox_rows(runtime))[LOCAL_CASE] == ("installation", "created", "done")
    # The installation it announced is now known, as if GitHub had delivered it.
    [(installation_id,)] = await fetch_all(runtime, 'SELECT "installationId" FROM "GitHubInstallation"')
    assert int(str(installation_id)) == payload("installation", "created.payload.json")["installation"]["id"]
