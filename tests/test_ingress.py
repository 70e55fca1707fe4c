"""Receiving: what GitHub's requests get back, and what the inbox holds afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient

from github_app.inbox.group_commit import GroupCommitWriter
from github_app.runtime import Runtime
from github_app.server import depth_sampler, open_writer, readiness
from github_app.web import WEBHOOK_PATH, create_app
from github_app.webhook import MAX_BODY_BYTES
from tests.conftest import WEBHOOK_SECRET, fetch_all, make_settings
from tests.deliveries import encode, guid, headers_for, payload


@dataclass
class Ingress:
    client: TestClient
    runtime: Runtime

    async def post(
        self, event: str, body: bytes, secret: str | None = WEBHOOK_SECRET, delivery_id: str | None = None, **kw: str
    ) -> tuple[int, dict[str, str]]:
        headers = headers_for(event, body, secret, delivery_id, **kw)
        resp = await self.client.post(WEBHOOK_PATH, data=body, headers=headers)
        return resp.status, await resp.json()

    async def rows(self) -> list[tuple[object, ...]]:
        return await fetch_all(
            self.runtime,
            "SELECT delivery_id, event, action, installation_id, repository, state FROM webhook_inbox",
        )


async def start_ingress(aiohttp_client, runtime: Runtime, secrets: tuple[str, ...]) -> AsyncIterator[Ingress]:  # type: ignore[no-untyped-def]
    writer = GroupCommitWriter(await open_writer(runtime))
    writer.start()
    app = create_app(writer, secrets, readiness(runtime), depth_sampler(runtime))
    client = await aiohttp_client(app)
    yield Ingress(client, runtime)
    await writer.close()
    await writer.writer.close()


@pytest.fixture
async def ingress(aiohttp_client, runtime: Runtime) -> AsyncIterator[Ingress]:  # type: ignore[no-untyped-def]
    async for i in start_ingress(aiohttp_client, runtime, (WEBHOOK_SECRET,)):
        yield i


PR_OPENED = encode(payload("pull_request", "opened.payload.json"))


async def test_verified_delivery_is_stored_then_acknowledged_202(ingress: Ingress) -> None:
    status, body = await ingress.post("pull_request", PR_OPENED, delivery_id=guid("d-1"))
    assert status == 202, body
    assert await ingress.rows() == [(guid("d-1"), "pull_request", "opened", 1, "Codertocat/Hello-World", "pending")]
    stored = await fetch_all(ingress.runtime, "SELECT payload FROM webhook_inbox")
    assert bytes(stored[0][0]) == PR_OPENED  # kept exactly as received


async def test_same_delivery_again_is_200_and_stored_once(ingress: Ingress) -> None:
    assert (await ingress.post("pull_request", PR_OPENED, delivery_id=guid("dup")))[0] == 202
    assert (await ingress.post("pull_request", PR_OPENED, delivery_id=guid("dup")))[0] == 200
    assert len(await ingress.rows()) == 1


@pytest.mark.parametrize(
    ("secret", "headers", "status", "reason"),
    [
        (None, {}, 401, "missing X-Hub-Signature-256"),
        ("wrong-secret-xyz", {}, 401, "signature does not match"),
    ],
)
async def test_unsigned_or_badly_signed_is_401_and_nothing_stored(
    ingress: Ingress, secret: str | None, headers: dict[str, str], status: int, reason: str
) -> None:
    got, body = await ingress.post("pull_request", PR_OPENED, secret=secret)
    assert (got, body["message"].startswith(reason)) == (status, True)
    assert await ingress.rows() == []


async def test_signature_over_a_tampered_body_is_refused(ingress: Ingress) -> None:
    headers = headers_for("pull_request", PR_OPENED, WEBHOOK_SECRET)
    tampered = PR_OPENED.replace(b'"opened"', b'"closed"', 1)
    resp = await ingress.client.post(WEBHOOK_PATH, data=tampered, headers=headers)
    assert resp.status == 401
    assert await ingress.rows() == []


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_github_headers_are_400(ingress: Ingress, missing: str) -> None:
    headers = headers_for("pull_request", PR_OPENED, WEBHOOK_SECRET)
    del headers[missing]
    resp = await ingress.client.post(WEBHOOK_PATH, data=PR_OPENED, headers=headers)
    assert resp.status == 400
    assert missing in (await resp.json())["message"]
    assert await ingress.rows() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "not a JSON object"), (b"", "not valid JSON")],
)
async def test_malformed_body_is_400(ingress: Ingress, body: bytes, reason: str) -> None:
    status, answer = await ingress.post("push", body)
    assert status == 400 and reason in answer["message"]
    assert await ingress.rows() == []


async def test_form_encoded_delivery_is_accepted_and_stored_as_json(ingress: Ingress) -> None:
    doc = payload("push", "payload.json")
    form = urlencode({"payload": json.dumps(doc)}).encode()
    status, _ = await ingress.post(
        "push", form, delivery_id=guid("form-1"), content_type="application/x-www-form-urlencoded"
    )
    assert status == 202
    stored = await fetch_all(ingress.runtime, "SELECT payload, repository FROM webhook_inbox")
    assert json.loads(bytes(stored[0][0])) == doc
    assert stored[0][1] == doc["repository"]["full_name"]


async def test_ping_is_answered_200_and_not_stored(ingress: Ingress) -> None:
    status, body = await ingress.post("ping", encode(payload("ping")))
    assert status == 200 and body["message"] == "pong"
    assert await ingress.rows() == []


async def test_body_over_25mb_is_413_without_reading_it(ingress: Ingress) -> None:
    headers = headers_for("push", b"", WEBHOOK_SECRET)
    headers["Content-Length"] = str(MAX_BODY_BYTES + 1)

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"  # the rest never comes: an answer proves the server did not wait for it

    resp = await asyncio.wait_for(ingress.client.post(WEBHOOK_PATH, data=trickle(), headers=headers), timeout=5)
    assert resp.status == 413
    assert await ingress.rows() == []


async def test_chunked_body_over_25mb_is_413(ingress: Ingress) -> None:
    chunk = b" " * (1024 * 1024)

    async def big() -> AsyncIterator[bytes]:
        for _ in range(26):
            yield chunk

    headers = headers_for("push", b"", WEBHOOK_SECRET)
    resp = await ingress.client.post(WEBHOOK_PATH, data=big(), headers=headers)
    assert resp.status == 413
    assert await ingress.rows() == []


async def test_rotation_accepts_old_and_new_secret(aiohttp_client, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    async for ingress in start_ingress(aiohttp_client, runtime, ("new-secret-2026", "old-secret-2025")):
        assert (await ingress.post("push", PR_OPENED, secret="old-secret-2025"))[0] == 202
        assert (await ingress.post("push", PR_OPENED, secret="new-secret-2026"))[0] == 202
        assert (await ingress.post("push", PR_OPENED, secret="retired-secret-2024"))[0] == 401
        assert len(await ingress.rows()) == 2


async def test_no_secret_configured_refuses_everything(aiohttp_client, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    async for ingress in start_ingress(aiohttp_client, runtime, ()):
        status, body = await ingress.post("push", PR_OPENED, secret="anything-at-all")
        assert status == 401 and "not configured" in body["message"]
        assert await ingress.rows() == []


def metric_values(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


async def test_health_readiness_and_metrics(ingress: Ingress) -> None:
    """Each delivery moves its own counter by exactly one, and the inbox depth is the inbox's."""
    assert (await ingress.client.get("/healthz")).status == 200
    ready = await ingress.client.get("/readyz")
    assert ready.status == 200, await ready.text()
    accepted = ("webhook_deliveries_received_total", (("event", "pull_request"), ("outcome", "accepted")))
    refused = ("webhook_deliveries_received_total", (("event", "pull_request"), ("outcome", "bad_signature")))
    before = metric_values(await (await ingress.client.get("/metrics")).text())
    await ingress.post("pull_request", PR_OPENED, delivery_id=guid("m-1"))
    await ingress.post("pull_request", PR_OPENED, secret="bad-secret-123")
    await ingress.post("pull_request", PR_OPENED, secret="bad-secret-123")
    after = metric_values(await (await ingress.client.get("/metrics")).text())
    assert after[accepted] == before.get(accepted, 0.0) + 1
    assert after[refused] == before.get(refused, 0.0) + 2
    assert after[("webhook_inbox_depth", (("state", "pending"),))] == 1.0
    # Receiving is not processing: the worker's latency count is not moved by the ingress.
    latency = ("webhook_processing_latency_seconds_count", ())
    assert after[latency] == before[latency]


async def test_readyz_is_503_with_a_reason_when_not_migrated(aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runtime = await Runtime.create(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"))
    try:
        app = create_app(GroupCommitWriter(await open_writer(runtime)), (WEBHOOK_SECRET,), readiness(runtime))
        client = await aiohttp_client(app)
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "bmad-app db upgrade" in (await resp.json())["reason"]
    finally:
        await runtime.close()
