"""The /api/v1 JSON API as the marketplace's services use it: Bearer keys against the seed's ApiKey,
404 for anything the key's user is not tied to, cursor paging, one error shape, a per-key rate limit,
and the operator's delivery retry through the inbox's own retry path."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from github_app.api import keys
from github_app.api.ratelimit import RateLimiter
from github_app.db.models import Project
from github_app.db.types import new_id
from github_app.demo.fake_github import FakeGitHub
from github_app.runtime import Runtime
from tests.chain.market import create_escrow, done_story
from tests.harness import App
from tests.test_cli import ROOT, bmad_app, clean_env
from tests.workflow import CLIENT, DEV, PM, QA, STRANGER, Market, seed_market


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


async def key_for(runtime: Runtime, login: str, *, admin: bool = False) -> str:
    async with runtime.sessionmaker() as s, s.begin():
        _id, key = await keys.create(s, f"{login}@example.com", f"{login}-service", admin=admin)
    return key


async def get(app: App, path: str, key: str | None, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = await app.client.get(path, headers=headers, params=params)
    return resp.status, await resp.json()


def conforms(body: Any, schema_name: str) -> bool:
    """The body matches its schema in /api/v1/openapi.json (real data; schemathesis covers generated input)."""
    import jsonschema_rs  # schemathesis's own validator

    from github_app.api.openapi import spec

    document = {"components": spec()["components"], "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema_rs.Draft202012Validator(document).validate(body)
    return True


def is_error(body: Any, code: str) -> bool:
    return set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


async def test_a_missing_wrong_or_malformed_key_is_401_with_one_error_shape(app: App, market: Market) -> None:
    good = await key_for(app.runtime, CLIENT)
    for key in (None, "bmad_" + "x" * 43, good[:-1], "not-a-key", good + "x"):
        status, body = await get(app, "/api/v1/projects", key)
        assert status == 401 and is_error(body, "unauthorized"), key
    resp = await app.client.get("/api/v1/projects", headers={"Authorization": f"Basic {good}"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await get(app, "/api/v1/projects", good))[0] == 200
    # Unknown paths and methods under the API answer in the same shape.
    status, body = await get(app, "/api/v1/nothing-here", good)
    assert status == 404 and is_error(body, "not_found")
    resp = await app.client.delete("/api/v1/projects", headers={"Authorization": f"Bearer {good}"})
    assert resp.status == 405 and is_error(await resp.json(), "method_not_allowed")


async def test_only_a_hash_of_the_key_is_stored(app: App, market: Market) -> None:
    key = await key_for(app.runtime, CLIENT)
    assert key.startswith("bmad_") and len(key) >= len("bmad_") + 43  # 256 bits of token_urlsafe
    [(stored,)] = await market.rows('SELECT "keyHash" FROM "ApiKey"')
    assert stored == hashlib.sha256(key.encode()).hexdigest() and key not in str(
        await market.rows('SELECT * FROM "ApiKey"')
    )


async def test_projects_the_user_is_tied_to_and_404_for_the_rest(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    story_id = await done_story(app, m)
    escrow_id = await create_escrow(m, story_id, contract_address="0x" + "ab" * 20, amount=1000)
    client, pm, dev, stranger = [await key_for(app.runtime, who) for who in (CLIENT, PM, DEV, STRANGER)]

    for key in (client, pm, dev):
        status, body = await get(app, "/api/v1/projects", key)
        assert status == 200 and [p["id"] for p in body["data"]] == [m.project_id] and body["nextCursor"] is None
    assert await get(app, "/api/v1/projects", stranger) == (200, {"data": [], "nextCursor": None})

    status, body = await get(app, f"/api/v1/projects/{m.project_id}/stories", pm)
    assert status == 200 and conforms(body, "StoryPage")
    [story] = body["data"]
    assert (story["id"], story["number"], story["status"]) == (story_id, "1.3", "DONE")
    assert story["developer"]["githubUsername"] == DEV
    assert story["gate"]["status"] == "PASS" and story["gate"]["accepted"] is True
    assert story["escrow"] == {"id": escrow_id, "status": "PENDING", "amount": "1000", "currency": "USDC",
                               "blockchain": "polygon"}  # fmt: skip

    status, detail = await get(app, f"/api/v1/stories/{story_id}", dev)
    assert status == 200 and conforms(detail, "StoryDetail")
    assert [d["pullRequest"]["number"] for d in detail["deliverables"]] == [3]
    actions = [a["action"] for a in detail["auditLog"]]
    assert actions and detail["auditLog"][-1]["toStatus"] == "DONE"
    assert detail["release"]["state"] == "pending" and detail["auditLogTruncated"] is False

    # The escrow: its client and its expert see it; the PM (tied to the project, not to the money) does not.
    for key in (client, dev):
        status, body = await get(app, f"/api/v1/escrows/{escrow_id}", key)
        assert status == 200 and body["id"] == escrow_id and body["transactions"] == [] and conforms(body, "Escrow")
    unknown = await get(app, f"/api/v1/escrows/{new_id()}", client)
    assert unknown[0] == 404 and is_error(unknown[1], "not_found")
    # Not tied answers exactly like "does not exist": nothing to probe.
    for path in (f"/api/v1/projects/{m.project_id}/stories", f"/api/v1/stories/{story_id}",
                 f"/api/v1/escrows/{escrow_id}"):  # fmt: skip
        assert await get(app, path, stranger) == unknown
    assert await get(app, f"/api/v1/escrows/{escrow_id}", pm) == unknown
    assert await get(app, f"/api/v1/projects/{new_id()}/stories", client) == unknown


async def test_lists_are_paged_by_cursor(app: App, market: Market) -> None:
    async with app.runtime.sessionmaker() as s, s.begin():
        for n in range(6):
            s.add(Project(id=new_id(), client_id=market.users[CLIENT], name=f"P{n}"))
    client = await key_for(app.runtime, CLIENT)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body = await get(app, "/api/v1/projects", client, **params)
        assert status == 200 and len(body["data"]) <= 3
        seen += [p["id"] for p in body["data"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7  # six new and the seeded one
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"cursor": "%%%"}, {"cursor": ""}):
        status, body = await get(app, "/api/v1/projects", client, **params)
        assert status == 400 and is_error(body, "invalid_request"), params


async def test_last_used_is_written_at_most_once_a_minute(app: App, market: Market) -> None:
    key = await key_for(app.runtime, CLIENT)
    assert await market.scalar('SELECT "lastUsed" FROM "ApiKey"') is None
    await get(app, "/api/v1/projects", key)
    first = await market.scalar('SELECT "lastUsed" FROM "ApiKey"')
    assert first is not None
    await get(app, "/api/v1/projects", key)
    assert await market.scalar('SELECT "lastUsed" FROM "ApiKey"') == first
    async with app.runtime.engine.begin() as conn:
        await conn.execute(text('UPDATE "ApiKey" SET "lastUsed" = \'2026-01-01 00:00:00\''))
    await get(app, "/api/v1/projects", key)
    assert str(await market.scalar('SELECT "lastUsed" FROM "ApiKey"')) > "2026-01-01 00:00:00.000"


async def test_requests_over_the_keys_rate_get_429_with_retry_after(app: App, market: Market) -> None:
    from github_app.api.routes import context_key

    api = next(sub for sub in app.client.app._subapps if context_key in sub)
    api[context_key].limiter = RateLimiter(per_minute=3)
    one, other = await key_for(app.runtime, CLIENT), await key_for(app.runtime, PM)
    assert [(await get(app, "/api/v1/projects", one))[0] for _ in range(3)] == [200, 200, 200]
    resp = await app.client.get("/api/v1/projects", headers={"Authorization": f"Bearer {one}"})
    assert resp.status == 429 and is_error(await resp.json(), "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 20
    assert (await get(app, "/api/v1/projects", other))[0] == 200  # per key


def test_the_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, clock=lambda: now[0])
    assert all(limiter.take("k") == 0 for _ in range(60))
    assert limiter.take("k") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.take("k") == 0 and limiter.take("k") > 0


async def dead_delivery(app: App, market: Market) -> str:
    from tests.deliveries import guid, payload

    delivery_id = guid("dead-1")
    await app.deliver("installation", payload("installation", "created.payload.json"), delivery_id, process=False)
    async with app.runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE webhook_inbox SET state = 'dead', attempts = 8, last_error = 'GitHub said 502' "
                 "WHERE delivery_id = :d"), {"d": delivery_id},
        )  # fmt: skip
    return delivery_id


async def test_admin_keys_list_dead_deliveries_and_retry_them_through_the_inbox(app: App, market: Market) -> None:
    delivery_id = await dead_delivery(app, market)
    admin, plain = await key_for(app.runtime, PM, admin=True), await key_for(app.runtime, QA)
    status, body = await get(app, "/api/v1/deliveries", plain, state="dead")
    assert status == 403 and is_error(body, "forbidden")
    resp = await app.client.post(
        f"/api/v1/deliveries/{delivery_id}/retry", headers={"Authorization": f"Bearer {plain}"}
    )
    assert resp.status == 403

    status, body = await get(app, "/api/v1/deliveries", admin, state="dead")
    assert status == 200 and [(d["id"], d["lastError"]) for d in body["data"]] == [(delivery_id, "GitHub said 502")]
    assert conforms(body, "DeliveryPage")
    assert (await get(app, "/api/v1/deliveries", admin, state="done"))[1]["data"] == []
    assert (await get(app, "/api/v1/deliveries", admin, state="gone"))[0] == 400

    resp = await app.client.post(
        f"/api/v1/deliveries/{delivery_id}/retry", headers={"Authorization": f"Bearer {admin}"}
    )
    assert resp.status == 202 and (await resp.json())["state"] == "pending"
    assert await market.rows("SELECT state, attempts FROM webhook_inbox") == [("pending", 0)]
    await app.process()
    assert await market.rows("SELECT state FROM webhook_inbox") == [("done",)]

    resp = await app.client.post("/api/v1/deliveries/nope/retry", headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 404 and is_error(await resp.json(), "not_found")
    async with app.runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE webhook_inbox SET state = 'processing'"))
    resp = await app.client.post(
        f"/api/v1/deliveries/{delivery_id}/retry", headers={"Authorization": f"Bearer {admin}"}
    )
    assert resp.status == 409 and is_error(await resp.json(), "conflict")


async def test_apikey_commands_create_list_revoke(app: App, market: Market, tmp_path: Path) -> None:
    env = clean_env(tmp_path, DATABASE_URL=app.runtime.settings.database_url)
    created = await asyncio.to_thread(bmad_app, "apikey", "create", "--user", f"{PM}@example.com", "--name", "ci",
                                      "--admin", env=env)  # fmt: skip
    assert created.returncode == 0, created.stderr
    [key] = created.stdout.splitlines()  # the key, on a line of its own, and nothing else on stdout
    assert key.startswith("bmad_") and "shown once" in created.stderr
    status, _ = await get(app, "/api/v1/deliveries", key)
    assert status == 200

    listed = await asyncio.to_thread(bmad_app, "apikey", "list", "--user", f"{PM}@example.com", env=env)
    [row] = listed.stdout.splitlines()[1:]
    key_id = row.split()[0]
    assert " yes " in row and row.endswith(" ci") and key not in listed.stdout

    revoked = await asyncio.to_thread(bmad_app, "apikey", "revoke", key_id, env=env)
    assert revoked.returncode == 0
    status, body = await get(app, "/api/v1/projects", key)
    assert status == 401 and is_error(body, "unauthorized")
    assert await market.rows("SELECT * FROM api_key_admin") == []
    again = await asyncio.to_thread(bmad_app, "apikey", "revoke", key_id, env=env)
    assert again.returncode == 1 and "no API key" in again.stderr
    nobody = await asyncio.to_thread(bmad_app, "apikey", "create", "--user", "nobody@example.com", "--name", "x",
                                     env=env)  # fmt: skip
    assert nobody.returncode == 1 and "no marketplace user" in nobody.stderr


def test_the_http_process_serves_the_api_without_chain_libraries(tmp_path: Path) -> None:
    script = """
import asyncio, sys, aiohttp
from github_app.config import Settings
from github_app.db import migrate
from github_app.server import run_server

async def main(url):
    stop, port = asyncio.Event(), asyncio.Future()
    task = asyncio.create_task(run_server(Settings(database_url=url, port=0), with_worker=False, stop=stop,
                                          started=port.set_result))
    base = f"http://127.0.0.1:{await port}/api/v1"
    async with aiohttp.ClientSession() as http:
        for path in ("/openapi.json", "/projects"):
            async with http.get(base + path, headers={"Authorization": "Bearer bmad_nope"}) as r:
                print(path, r.status)
    stop.set()
    await task
    roots = ("web3", "eth_account", "eth", "solders", "solana", "spl")
    chain = sorted(m for m in sys.modules if m.split(".")[0] in roots)
    print("chain modules:", chain)

migrate.upgrade(sys.argv[1])
asyncio.run(main(sys.argv[1]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, f"sqlite+aiosqlite:///{tmp_path / 'light.sqlite3'}"],
        cwd=ROOT, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "/openapi.json 200" in result.stdout and "/projects 401" in result.stdout
    assert "chain modules: []" in result.stdout
