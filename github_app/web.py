"""The HTTP face of the app: the webhook endpoint, health, readiness and metrics.

The webhook handler does no handler work: it verifies, stores (group commit) and answers. GitHub
gives a delivery 10 seconds; ours is answered as soon as its row is committed.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from github_app.api.context import PREFIX, ApiContext, ApiLoader, ContextSource, Handler, api_app, source_key
from github_app.db.clock import utcnow
from github_app.http_limits import (
    BodyBudget,
    BodyTimeout,
    BodyTooLarge,
    GuardedHandler,
    HttpLimits,
    OverBudget,
    RefusalLog,
    read_body,
)
from github_app.inbox.group_commit import GroupCommitWriter, InboxUnavailable
from github_app.metrics import (
    DELIVERIES_RECEIVED,
    HTTP_BODY_BYTES_IN_FLIGHT,
    HTTP_CONNECTIONS_OPEN,
    INBOX_DEPTH,
    exposition,
)
from github_app.webhook import (
    MAX_BODY_BYTES,
    Delivery,
    RejectedDelivery,
    event_label,
    parse_delivery,
    quote,
    refuse_before_body,
)

log = logging.getLogger("github_app.ingress")

WEBHOOK_PATH = "/api/github/webhooks"
ReadinessCheck = Callable[[], Awaitable[str | None]]
DepthSampler = Callable[[], Awaitable[dict[str, int]]]

writer_key = web.AppKey("writer", GroupCommitWriter)
secrets_key: web.AppKey[Sequence[str]] = web.AppKey("secrets")
readiness_key: web.AppKey[ReadinessCheck] = web.AppKey("readiness")
depth_key: web.AppKey[DepthSampler | None] = web.AppKey("depth")
limits_key = web.AppKey("limits", HttpLimits)
budget_key = web.AppKey("budget", BodyBudget)
refusals_key = web.AppKey("refusals", RefusalLog)


_STORED = b'{"message": "stored"}'
_ALREADY_STORED = b'{"message": "already stored"}'


def _reply(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _refused(request: web.Request, rejected: RejectedDelivery, *, close: bool = False) -> web.Response:
    event = request.headers.get("X-GitHub-Event", "")
    DELIVERIES_RECEIVED.labels(event_label(event), rejected.outcome).inc()
    if request.app[refusals_key].allow():
        log.warning(
            "delivery rejected",
            extra={
                "delivery_id": quote(request.headers.get("X-GitHub-Delivery")),
                "event": quote(event),
                "outcome": rejected.outcome,
                "reason": rejected.reason,
            },
        )
    response = _reply(rejected.status, rejected.reason)
    if close:
        # The rest of the body is not wanted: the connection ends with this answer.
        response.headers["Connection"] = "close"
    return response


async def receive_webhook(request: web.Request) -> web.Response:
    try:
        refuse_before_body(request.headers)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise RejectedDelivery(413, f"body over {MAX_BODY_BYTES} bytes", "too_large")
    except RejectedDelivery as rejected:
        return _refused(request, rejected, close=True)
    hold = request.app[budget_key].hold()
    try:
        try:
            body = await read_body(request, request.app[limits_key], hold, MAX_BODY_BYTES)
        except BodyTooLarge:
            return _refused(
                request, RejectedDelivery(413, f"body over {MAX_BODY_BYTES} bytes", "too_large"), close=True
            )
        except OverBudget:
            busy = RejectedDelivery(503, "too many request bodies in flight: try again", "busy")
            return _refused(request, busy, close=True)
        except BodyTimeout as slow:
            reason = "body stalled" if slow.stalled else "body not complete in time"
            return _refused(request, RejectedDelivery(408, reason, "body_timeout"), close=True)
        except RequestPayloadError as exc:
            return _refused(
                request, RejectedDelivery(400, f"body cannot be read ({exc})"[:80], "malformed"), close=True
            )
        except ConnectionError:
            # Nothing to answer and nothing wrong on our side: one line, no traceback.
            DELIVERIES_RECEIVED.labels(event_label(request.headers.get("X-GitHub-Event", "")), "client_gone").inc()
            if request.app[refusals_key].allow():
                log.info(
                    "client went away before sending the whole body",
                    extra={"delivery_id": quote(request.headers.get("X-GitHub-Delivery")), "outcome": "client_gone"},
                )
            return _reply(400, "client went away")
        try:
            delivery = parse_delivery(request.headers, body, request.app[secrets_key], utcnow())
        except RejectedDelivery as rejected:
            return _refused(request, rejected)
        return await _store(request, delivery)
    finally:
        hold.release()


async def _store(request: web.Request, delivery: Delivery) -> web.Response:
    if delivery.event == "ping":
        DELIVERIES_RECEIVED.labels("ping", "ping").inc()
        log.info("delivery received", extra={"delivery_id": delivery.delivery_id, "event": "ping", "outcome": "ping"})
        return _reply(200, "pong")
    try:
        new = await request.app[writer_key].submit(delivery)
    except InboxUnavailable as exc:
        DELIVERIES_RECEIVED.labels(event_label(delivery.event), "unavailable").inc()
        return _reply(503, str(exc))
    outcome = "accepted" if new else "duplicate"
    DELIVERIES_RECEIVED.labels(event_label(delivery.event), outcome).inc()
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
    if isinstance(request.protocol, GuardedHandler):
        HTTP_CONNECTIONS_OPEN.set(request.protocol.server.open)
    HTTP_BODY_BYTES_IN_FLIGHT.set(request.app[budget_key].in_flight)
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_app(
    writer: GroupCommitWriter,
    secrets: Sequence[str],
    readiness: ReadinessCheck,
    depth: DepthSampler | None = None,
    limits: HttpLimits | None = None,
    api: ApiContext | ApiLoader | None = None,
) -> web.Application:
    """The application; serve it with `http_limits.GuardedRunner` so that its connections are bounded too.

    `api` as a loader mounts /api/v1 without loading it: the handlers and their context are loaded when
    the first API request arrives (see mount_api_lazily)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[limits_key] = limits = limits or HttpLimits()
    app[budget_key] = BodyBudget(limits.body_budget)
    app[refusals_key] = RefusalLog()
    app[writer_key] = writer
    app[secrets_key] = tuple(secrets)
    app[readiness_key] = readiness
    app[depth_key] = depth
    app.router.add_post(WEBHOOK_PATH, receive_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if isinstance(api, ApiContext):
        from github_app.api.routes import add_api

        add_api(app, api)
    elif api is not None:
        mount_api_lazily(app, api)
    return app


_API_ROUTES = "github_app.api.routes"


def mount_api_lazily(app: web.Application, load: ApiLoader) -> None:
    """/api/v1 with the same routes, answered by the same handlers and middleware, which an HTTP-only
    process imports only when an API request arrives: they load SQLAlchemy and the models (about 19 MiB
    of memory in every process), which the webhook path never needs."""

    def load_all() -> ApiContext:
        # The import is the costly part: it runs in the loader's thread too, off the event loop.
        importlib.import_module(_API_ROUTES)
        return load()

    app.add_subapp(PREFIX, api_app(ContextSource(load_all), _deferred, _deferred_errors))


@web.middleware
async def _deferred_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    await request.app[source_key].ready()
    routes = sys.modules[_API_ROUTES]
    response: web.StreamResponse = await routes.errors(request, handler)
    return response


def _deferred(name: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # Loaded by _deferred_errors, which runs first.
        handler: Handler = getattr(sys.modules[_API_ROUTES], name)
        return await handler(request)

    return handle
