"""`bmad-app register`, end to end against the fake GitHub: the local page posts app.yml to GitHub's
web host, GitHub sends the browser back with a code, the code becomes the app's credentials in .env."""

from __future__ import annotations

import asyncio
import html
import json
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization

from github_app.config import load_settings
from github_app.demo.fake_github import FakeGitHub
from tests.test_cli import ROOT, clean_env


def start_register(tmp_path: Path, fake: FakeGitHub, *args: str) -> subprocess.Popen[str]:
    env = clean_env(tmp_path, GITHUB_API_URL=fake.url)
    return subprocess.Popen(
        [sys.executable, "-m", "github_app", "register", "--no-browser", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def page_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    match = re.search(r"Open (http://127\.0\.0\.1:\d+/) ", line)
    assert match, line + (proc.stderr.read() if proc.stderr else "")
    return match.group(1)


async def press_the_button(http: aiohttp.ClientSession, url: str) -> tuple[str, dict[str, Any], aiohttp.ClientResponse]:
    """What the browser does: load the page, post its form to GitHub, follow GitHub's redirect."""
    async with http.get(url) as resp:
        text = await resp.text()
    action = html.unescape(re.search(r'action="([^"]+)"', text).group(1))  # type: ignore[union-attr]
    manifest = html.unescape(re.search(r'name="manifest" value="([^"]+)"', text).group(1))  # type: ignore[union-attr]
    resp = await http.post(action, data={"manifest": manifest})
    await resp.read()
    return action, json.loads(manifest), resp


async def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    return proc.returncode, out, err


def public_pem_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_register_creates_the_app_and_writes_its_credentials_owner_only(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    proc = start_register(tmp_path, fake_github, "--org", "acme", "--url", "https://bmad.example.com/")
    try:
        url = await page_url(proc)
        async with aiohttp.ClientSession() as http:
            # A callback that does not carry this page's state is refused: nobody else's code lands here.
            async with http.get(url + "callback?code=planted&state=guess") as resp:
                assert resp.status == 400
            action, manifest, resp = await press_the_button(http, url)
        assert resp.status == 200 and "Registered bmad-marketplace" in await resp.text()
        code, out, err = await finish(proc)
    finally:
        proc.kill()
    assert code == 0, err
    assert action.startswith(f"{fake_github.url}/organizations/acme/settings/apps/new?state=")
    app_yml = __import__("yaml").safe_load((ROOT / "app.yml").read_text())
    assert manifest["hook_attributes"] == {"url": "https://bmad.example.com/api/github/webhooks", "active": True}
    assert manifest["default_events"] == app_yml["default_events"]
    assert manifest["default_permissions"] == app_yml["default_permissions"]
    assert manifest["redirect_url"] == url + "callback"

    [registered] = fake_github.registered_apps.values()
    assert registered["owner"]["login"] == "acme"
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings(_dotenv(env_file))
    assert settings.github_app_id == registered["id"]
    assert settings.webhook_secrets == (registered["webhook_secret"],)
    assert settings.github_private_key is not None
    assert public_pem_of(settings.github_private_key) == registered["public_pem"]
    # One line each, unquoted: `docker run --env-file` reads the same file literally.
    key_line = next(line for line in env_file.read_text().splitlines() if line.startswith("GITHUB_PRIVATE_KEY="))
    assert key_line.startswith("GITHUB_PRIVATE_KEY=-----BEGIN") and key_line.endswith("-----\\n")
    assert f"app id {registered['id']}" in out and "/installations/new" in out
    # The secret and the key are in the file, never on the terminal.
    assert registered["webhook_secret"] not in out + err and "PRIVATE KEY" not in out + err
    # The code was exchanged once; GitHub forgets it after that.
    conversions = [r for r in fake_github.requests if r.path.startswith("/app-manifests/")]
    assert [(r.method, r.status) for r in conversions] == [("POST", 201)] and fake_github.manifest_codes == {}


def _dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


async def test_existing_credentials_are_kept_unless_forced(fake_github: FakeGitHub, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=sqlite:///app.sqlite3\nGITHUB_APP_ID=7\n")
    env_file.chmod(0o644)
    proc = start_register(tmp_path, fake_github, "--url", "https://bmad.example.com")
    code, out, err = await finish(proc)
    assert code == 1 and "already sets GITHUB_APP_ID; use --force" in err
    assert env_file.read_text() == "DATABASE_URL=sqlite:///app.sqlite3\nGITHUB_APP_ID=7\n"
    assert fake_github.requests == []  # GitHub was never asked

    proc = start_register(tmp_path, fake_github, "--force", "--name", "BMAD staging")
    try:
        url = await page_url(proc)
        async with aiohttp.ClientSession() as http:
            action, manifest, resp = await press_the_button(http, url)
        assert resp.status == 200
        code, out, err = await finish(proc)
    finally:
        proc.kill()
    assert code == 0, err
    assert action.startswith(f"{fake_github.url}/settings/apps/new?state=")
    # No public URL: the app is created with its webhook off, and the command says so.
    assert manifest["hook_attributes"]["active"] is False and manifest["name"] == "BMAD staging"
    assert "webhook is off" in out
    [registered] = fake_github.registered_apps.values()
    values = _dotenv(env_file)
    assert values["DATABASE_URL"] == "sqlite:///app.sqlite3"  # other settings are kept
    assert values["GITHUB_APP_ID"] == str(registered["id"])
    assert "GITHUB_WEBHOOK_SECRET" not in values
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_github_url_follows_the_api_host_for_enterprise() -> None:
    assert load_settings({}).github_url == "https://github.com"
    ghes = load_settings({"GITHUB_API_URL": "https://ghe.example.com/api/v3"})
    assert ghes.github_url == "https://ghe.example.com"
    explicit = load_settings({"GITHUB_API_URL": "https://api.ghe.example.com", "GITHUB_URL": "https://ghe.example.com"})
    assert explicit.github_url == "https://ghe.example.com"
