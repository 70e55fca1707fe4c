"""The HTTP face of the app: the webhook endpoint, health, readiness and metrics.

The webhook handler does no handler work: it verifies, stores (group commit) and answers. GitHub
gives a delivery 10 seconds; ours is answered as soon as its row is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from github_app.db.types import utcnow
from github_app.inbox.group_commit import GroupCommitWriter, InboxUnavailable
from github_app.metrics import DELIVERIES_RECEIVED, INBOX_DEPTH, exposition
from github_app.webhook import MAX_BODY_BYTES, RejectedDelivery, parse_delivery

if TYPE_CHECKING:
    from github_app.api.routes import ApiContext

log = logging.getLogger("github_app.ingress")

WEBHOOK_PATH = "/api/github/webhooks"
ReadinessCheck = Callable[[], Awaitable[str | None]]
DepthSampler = Callable[[], Awaitable[dict[str, int]]]

writer_key = web.AppKey("writer", GroupCommitWriter)
secrets_key: web.AppKey[Sequence[str]] = web.AppKey("secrets")
readiness_key: web.AppKey[ReadinessCheck] = web.AppKey("readiness")
depth_key: web.AppKey[DepthSampler | None] = web.AppKey("depth")


_STORED = b'{"message": "stored"}'
_ALREADY_STORED = b'{"message": "already stored"}'


def _reply(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def receive_webhook(request: web.Request) -> web.Response:
    event = request.headers.get("X-GitHub-Event", "")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        DELIVERIES_RECEIVED.labels(event, "too_large").inc()
        # Answer without reading the body; the connection is closed after the response.
        return web.json_response(
            {"message": f"body over {MAX_BODY_BYTES} bytes"}, status=413, headers={"Connection": "close"}
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        DELIVERIES_RECEIVED.labels(event, "too_large").inc()
        return _reply(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        delivery = parse_delivery(request.headers, body, request.app[secrets_key], utcnow())
    except RejectedDelivery as rejected:
        DELIVERIES_RECEIVED.labels(event, rejected.outcome).inc()
        log.warning(
            "delivery rejected",
            extra={
                "delivery_id": request.headers.get("X-GitHub-Delivery"),
                "event": event,
                "outcome": rejected.outcome,
                "reason": rejected.reason,
            },
        )
        return _reply(rejected.status, rejected.reason)
    if delivery.event == "ping":
        DELIVERIES_RECEIVED.labels("ping", "ping").inc()
        log.info("delivery received", extra={"delivery_id": delivery.delivery_id, "event": "ping", "outcome": "ping"})
        return _reply(200, "pong")
    try:
        new = await request.app[writer_key].submit(delivery)
    except InboxUnavailable as exc:
        DELIVERIES_RECEIVED.labels(delivery.event, "unavailable").inc()
        return _reply(503, str(exc))
    outcome = "accepted" if new else "duplicate"
    DELIVERIES_RECEIVED.labels(delivery.event, outcome).inc()
    log.info(
        "delivery received",
        extra={
            "delivery_id": delivery.delivery_id,
            "event": delivery.event,
            "action": delivery.action,
            "repository": delivery.repository,
            "outcome": outcome,
        },
    )
    # Prebuilt bodies: the two answers of the hot path cost no JSON encoding.
    return web.Response(
        status=202 if new else 200, body=_STORED if new else _ALREADY_STORED, content_type="application/json"
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    problem = await request.app[readiness_key]()
    if problem:
        return web.json_response({"status": "unavailable", "reason": problem}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    sample = request.app[depth_key]
    if sample is not None:
        try:
            for state, count in (await sample()).items():
                INBOX_DEPTH.labels(state).set(count)
        except Exception as exc:
            log.warning("cannot sample inbox depth", extra={"error": repr(exc)})
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_app(
    writer: GroupCommitWriter,
    secrets: Sequence[str],
    readiness: ReadinessCheck,
    depth: DepthSampler | None = None,
    api: ApiContext | None = None,
) -> web.Application:
    # One byte over GitHub's cap lets aiohttp refuse a chunked body without buffering more.
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[writer_key] = writer
    app[secrets_key] = tuple(secrets)
    app[readiness_key] = readiness
    app[depth_key] = depth
    app.router.add_post(WEBHOOK_PATH, receive_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if api is not None:
        from github_app.api.routes import add_api

        add_api(app, api)
    return app
