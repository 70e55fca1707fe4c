"""The /api/v1 HTTP handlers: authentication, the per-key rate limit, one error shape, paging.

Every error is `{"error": {"code": ..., "message": ...}}` with the HTTP status; clients branch on
`code`. Read-only except the operator's delivery retry, which is the inbox's own retry (the one
`bmad-app deliveries retry` uses): the delivery is processed again by the worker, through the handlers,
like any other.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.api import keys, views
from github_app.api.context import PREFIX as PREFIX
from github_app.api.context import ApiContext as ApiContext
from github_app.api.context import Handler, api_app, source_key
from github_app.api.context import context_key as context_key
from github_app.api.openapi import spec
from github_app.api.ratelimit import RateLimiter

log = logging.getLogger("github_app.api")


def context(request: web.Request) -> ApiContext:
    app = request.app
    return app[context_key] if context_key in app else app[source_key].get()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


NOT_FOUND = ("not_found", "no such resource, or not one this key may see")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except views.BadRequest as exc:
        return error_response(400, "invalid_request", str(exc))
    except web.HTTPMethodNotAllowed as exc:
        allow = ", ".join(sorted(exc.allowed_methods))
        return error_response(405, "method_not_allowed", f"use {allow}", {"Allow": allow})
    except web.HTTPNotFound:
        return error_response(404, *NOT_FOUND)
    except web.HTTPException as exc:
        return error_response(exc.status, "http_error", exc.reason)
    except Exception:
        log.exception("API request failed", extra={"path": request.path})
        return error_response(500, "internal", "the request failed; it has been logged")


async def authorize(request: web.Request, session: AsyncSession, *, admin: bool = False) -> keys.Principal:
    ctx = context(request)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="bmad-app"'}
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <API key>", challenge)
    who = await keys.authenticate(session, presented.strip())
    if who is None:
        raise ApiError(401, "unauthorized", "the API key is wrong or has been revoked", challenge)
    wait = ctx.limiter.take(who.key_id)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            "too many requests for this key; retry after the Retry-After seconds",
            {"Retry-After": RateLimiter.retry_after(wait)},
        )
    if admin and not who.admin:
        raise ApiError(403, "forbidden", "this endpoint needs an admin key")
    return who


def page(request: web.Request, *extra: str) -> tuple[int, str | None]:
    # An unknown parameter is refused, not ignored: `?status=dead` for `?state=dead` would otherwise
    # silently list everything.
    unknown = sorted(set(request.query) - {"limit", "cursor", *extra})
    if unknown:
        raise views.BadRequest(f"unknown query parameter {unknown[0]!r}")
    if any(len(request.query.getall(name)) > 1 for name in request.query):
        raise views.BadRequest("each query parameter may be given once")
    return views.page_args(request.query.get("limit"), request.query.get("cursor"))


def listing(data: list[dict[str, Any]], cursor: str | None) -> web.Response:
    return web.json_response({"data": data, "nextCursor": cursor})


async def projects(request: web.Request) -> web.Response:
    async with context(request).sessionmaker() as session, session.begin():
        who = await authorize(request, session)
        limit, after = page(request)
        return listing(*await views.list_projects(session, who, limit, after))


async def project_stories(request: web.Request) -> web.Response:
    async with context(request).sessionmaker() as session, session.begin():
        who = await authorize(request, session)
        limit, after = page(request)
        if await views.visible_project(session, who, request.match_info["project_id"]) is None:
            raise ApiError(404, *NOT_FOUND)
        return listing(*await views.list_stories(session, request.match_info["project_id"], limit, after))


async def story(request: web.Request) -> web.Response:
    async with context(request).sessionmaker() as session, session.begin():
        who = await authorize(request, session)
        body = await views.story_detail(session, who, request.match_info["story_id"])
    if body is None:
        raise ApiError(404, *NOT_FOUND)
    return web.json_response(body)


async def escrow(request: web.Request) -> web.Response:
    async with context(request).sessionmaker() as session, session.begin():
        who = await authorize(request, session)
        body = await views.escrow_detail(session, who, request.match_info["escrow_id"])
    if body is None:
        raise ApiError(404, *NOT_FOUND)
    return web.json_response(body)


async def deliveries(request: web.Request) -> web.Response:
    async with context(request).sessionmaker() as session, session.begin():
        await authorize(request, session, admin=True)
        limit, after = page(request, "state")
        return listing(*await views.list_deliveries(session, request.query.get("state"), limit, after))


async def retry_delivery(request: web.Request) -> web.Response:
    from github_app.db.app_tables import InboxState, WebhookDelivery
    from github_app.inbox import store

    ctx = context(request)
    delivery_id = request.match_info["delivery_id"]
    async with ctx.sessionmaker() as session, session.begin():
        who = await authorize(request, session, admin=True)
    async with ctx.engine.begin() as conn:
        row = await store.get_row(conn, delivery_id)
        if row is None:
            raise ApiError(404, *NOT_FOUND)
        if row.state == InboxState.PROCESSING or not await store.retry(conn, delivery_id):
            raise ApiError(409, "conflict", "the delivery is being processed right now; try again when it is not")
    log.info("delivery retried by an operator", extra={"delivery_id": delivery_id, "api_key_id": who.key_id})
    if ctx.on_retry is not None:
        ctx.on_retry()
    async with ctx.sessionmaker() as session:
        retried = await session.get(WebhookDelivery, delivery_id)
        assert retried is not None
        return web.json_response(views.delivery_json(retried), status=202)


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(spec())


def handler(name: str) -> Handler:
    """The handler a route of github_app.api.context.ROUTES names."""
    return cast(Handler, globals()[name])


def add_api(app: web.Application, ctx: ApiContext) -> None:
    app.add_subapp(PREFIX, api_app(ctx, handler, errors))
