"""What mounts /api/v1, without its handlers: the routes by name, the context they share, and the
sub-application. An HTTP-only process mounts the API from this alone and loads the handlers (and with
them SQLAlchemy, about 19 MiB) on the first API request; see web.create_app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from github_app.api.ratelimit import RateLimiter

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

PREFIX = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Method, path under PREFIX, and the name of its handler in github_app.api.routes.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/openapi.json", "openapi"),
    ("GET", "/projects", "projects"),
    ("GET", "/projects/{project_id}/stories", "project_stories"),
    ("GET", "/stories/{story_id}", "story"),
    ("GET", "/escrows/{escrow_id}", "escrow"),
    ("GET", "/deliveries", "deliveries"),
    ("POST", "/deliveries/{delivery_id}/retry", "retry_delivery"),
)


@dataclass
class ApiContext:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    limiter: RateLimiter
    # Called after an operator's retry: wakes an in-process worker at once instead of at its next poll.
    on_retry: Callable[[], None] | None = None


ApiLoader = Callable[[], ApiContext]


class ContextSource:
    """The API's context, made by `load` when the first API request arrives. `load` runs in a thread:
    what it imports and builds (SQLAlchemy, the engine) takes a quarter of a second, during which the
    event loop keeps answering webhooks."""

    def __init__(self, load: ApiLoader) -> None:
        self._load = load
        self._context: ApiContext | None = None
        self._loading: asyncio.Future[ApiContext] | None = None

    @property
    def loaded(self) -> ApiContext | None:
        return self._context

    async def ready(self) -> ApiContext:
        """The context, loaded first if it is not there yet (once, however many requests wait for it)."""
        if self._context is not None:
            return self._context
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        try:
            # Shielded: a client that goes away does not cancel the load the next request needs.
            self._context = await asyncio.shield(self._loading)
        except Exception:
            self._loading = None  # the next API request tries again
            raise
        return self._context

    def get(self) -> ApiContext:
        assert self._context is not None, "the API's context is loaded before its handlers run"
        return self._context


# The sub-application holds its context under context_key, or, until the first request made it, its
# source under source_key.
context_key = web.AppKey("api_context", ApiContext)
source_key = web.AppKey("api_context_source", ContextSource)


def api_app(
    context: ApiContext | ContextSource, handler: Callable[[str], Handler], middleware: Middleware
) -> web.Application:
    """The sub-application mounted at PREFIX (its middleware never runs on the webhook's hot path);
    `handler` gives the handler of each name in ROUTES; `middleware` is decorated with web.middleware."""
    api = web.Application(middlewares=[middleware])
    if isinstance(context, ApiContext):
        api[context_key] = context
    else:
        api[source_key] = context
    for method, path, name in ROUTES:
        api.router.add_route(method, path, handler(name))
    return api
