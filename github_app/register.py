"""`bmad-app register`: create the GitHub App from `app.yml` with GitHub's manifest flow.

1. A page on 127.0.0.1 whose button posts the manifest (webhook URL filled in) to GitHub's web host.
2. GitHub sends the browser back to this page's callback with a one-time code and the state we gave;
   the code is exchanged with `POST /app-manifests/{code}/conversions`.
3. The app's id, private key and webhook secret go to `.env`, owner-only (0600). A value already there
   is never overwritten without `--force`, and that is checked before GitHub is asked for anything.

The state is random and compared in constant time: a code delivered to the callback by anyone but the
browser this page sent to GitHub is refused, so nobody can plant their own app's credentials here.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from dotenv import dotenv_values

from github_app.config import Settings

WEBHOOK_PATH = "/api/github/webhooks"
# What register writes; a value already in .env for any of these (or a key file named there, which
# cannot be set beside an inline key) stops it unless --force.
WRITTEN = ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET")
CONFLICTING = (*WRITTEN, "GITHUB_PRIVATE_KEY_PATH")


class RegisterError(Exception):
    """Refused before anything changed."""


@dataclass(frozen=True)
class Registered:
    app_id: int
    slug: str
    html_url: str
    env_path: Path


def find_manifest(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else [Path("app.yml"), Path(__file__).resolve().parent.parent / "app.yml"]
    for path in candidates:
        if path.is_file():
            return path
    raise RegisterError(f"no manifest: {', '.join(str(c) for c in candidates)} not found (use --manifest PATH)")


def build_manifest(path: Path, *, public_url: str | None, redirect_url: str, name: str | None) -> dict[str, Any]:
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RegisterError(f"cannot read the manifest {str(path)!r}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise RegisterError(f"the manifest {str(path)!r} is not a YAML mapping")
    hook = dict(manifest.get("hook_attributes") or {})
    if public_url:
        hook.update({"url": public_url.rstrip("/") + WEBHOOK_PATH, "active": True})
    else:
        # No public address yet: GitHub would refuse a hook with a placeholder URL; the app is created
        # with its webhook off, to be turned on in its settings once it has one.
        hook = {"url": public_url or "", "active": False}
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = redirect_url
    if name:
        manifest["name"] = name
    return manifest


def env_conflicts(env_path: Path) -> list[str]:
    if not env_path.is_file():
        return []
    values = dotenv_values(env_path)
    return [name for name in CONFLICTING if (values.get(name) or "").strip()]


def _quoted(value: str) -> str:
    """Unquoted with `\\n` for newlines when that is unambiguous: `docker run --env-file` takes values
    literally (quotes included) and the app turns `\\n` in a key back into newlines, so one file serves
    both `bmad-app` and Docker."""
    one_line = value.replace("\n", "\\n")
    if value == value.strip(" \t") and not any(c in value for c in "\"'#\\$`"):
        return one_line
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_env(env_path: Path, values: dict[str, str], *, force: bool) -> None:
    """Update `.env` in place (other lines kept as they are), atomically, mode 0600."""
    conflicts = env_conflicts(env_path)
    if conflicts and not force:
        raise RegisterError(f"{env_path} already sets {', '.join(conflicts)}; use --force to replace")
    lines = env_path.read_text(encoding="utf-8").splitlines() if env_path.is_file() else []
    replaced = {*values, *(CONFLICTING if force else ())}
    kept = [line for line in lines if line.split("=", 1)[0].strip().removeprefix("export ").strip() not in replaced]
    kept += [f"{name}={_quoted(value)}" for name, value in values.items()]
    tmp = env_path.with_name(f".{env_path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(kept) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask said
        os.replace(tmp, env_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def form_action(settings: Settings, org: str | None, state: str) -> str:
    base = settings.github_url.rstrip("/")
    where = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    return f"{base}{where}?state={state}"


def page(action: str, manifest: dict[str, Any]) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Register the BMAD marketplace GitHub App</title></head>
<body>
<h1>Register {html.escape(str(manifest.get("name", "the app")))}</h1>
<p>GitHub will ask you to confirm; it then sends you back here and the app's credentials are written to
<code>.env</code>.</p>
<form method="post" action="{html.escape(action)}">
<input type="hidden" name="manifest" value="{html.escape(json.dumps(manifest))}">
<button type="submit">Create the GitHub App</button>
</form>
</body></html>
"""


async def exchange(settings: Settings, code: str) -> dict[str, Any]:
    import aiohttp

    from github_app.github.client import DEFAULT_REQUESTER

    url = f"{settings.github_api_url.rstrip('/')}/app-manifests/{code}/conversions"
    headers = {"Accept": "application/vnd.github+json", "User-Agent": DEFAULT_REQUESTER}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(url, headers=headers) as resp,
    ):
        body = await resp.json(content_type=None)
        if resp.status != 201 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise RegisterError(f"GitHub refused the code ({resp.status} {message or ''})".rstrip())
    for name in ("id", "pem", "slug", "html_url"):
        if not body.get(name):
            raise RegisterError(f"GitHub's answer has no {name!r}")
    return body


async def register(
    settings: Settings,
    *,
    org: str | None,
    public_url: str | None,
    env_path: Path,
    force: bool,
    manifest_path: str | None = None,
    name: str | None = None,
    port: int = 0,
    ready: Callable[[str], None] = print,
    timeout: float = 1800.0,  # noqa: ASYNC109 - how long the page waits for GitHub's redirect
) -> Registered:
    conflicts = env_conflicts(env_path)
    if conflicts and not force:
        raise RegisterError(f"{env_path} already sets {', '.join(conflicts)}; use --force to replace")
    source = find_manifest(manifest_path)
    state = secrets.token_urlsafe(24)
    done: asyncio.Future[Registered] = asyncio.get_running_loop().create_future()
    manifest: dict[str, Any] = {}

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page(form_action(settings, org, state), manifest), content_type="text/html")

    async def callback(request: web.Request) -> web.Response:
        given, code = request.query.get("state", ""), request.query.get("code", "")
        if not code or not hmac.compare_digest(given.encode(), state.encode()):
            return web.Response(status=400, text="This callback does not come from the page this command served.")
        if done.done():
            return web.Response(status=409, text="The app is already registered.")
        try:
            app = await exchange(settings, code)
            values = {
                "GITHUB_APP_ID": str(app["id"]),
                "GITHUB_PRIVATE_KEY": str(app["pem"]).strip() + "\n",
            }
            if app.get("webhook_secret"):
                values["GITHUB_WEBHOOK_SECRET"] = str(app["webhook_secret"])
            write_env(env_path, values, force=force)
        except RegisterError as exc:
            if not done.done():
                done.set_exception(exc)
            return web.Response(status=502, text=str(exc))
        result = Registered(int(app["id"]), str(app["slug"]), str(app["html_url"]), env_path)
        done.set_result(result)
        install = f"{result.html_url}/installations/new"
        body = f"Registered {result.slug} (app id {result.app_id}). Install it: {install}"
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/callback", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        bound = runner.addresses[0][1]
        local = f"http://127.0.0.1:{bound}"
        manifest.update(build_manifest(source, public_url=public_url, redirect_url=f"{local}/callback", name=name))
        ready(local + "/")
        return await asyncio.wait_for(done, timeout)
    finally:
        await runner.cleanup()
