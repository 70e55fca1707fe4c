"""Bounds on what one HTTP client, or many, can hold of the server: time, connections, body memory.

The endpoint faces the internet. Without these, a client that sends one byte and waits keeps a file
descriptor forever, and enough of them starve `/healthz` and GitHub's own deliveries; bodies sent
slowly and in parallel take memory without limit. aiohttp has the idle keep-alive timer only, so the
rest lives here:

- the first request of a connection must have its headers complete within `header_timeout`; later
  requests on a kept-alive connection within `idle_timeout` of the previous answer (aiohttp's own
  keep-alive timer closes a connection whose next request is not complete by then);
- a body must keep coming (`body_stall`) and be complete within `body_timeout`;
- past `max_connections` open connections, the oldest one still waiting for or sending its request is
  closed to make room; when every connection has a request being handled, the new one is closed;
- the bytes of all bodies being read at once stay under `body_budget` (`BodyBudget`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from github_app.metrics import HTTP_CONNECTIONS_CLOSED

log = logging.getLogger("github_app.ingress")

# File descriptors kept out of the HTTP cap: database connections, log files, and the up to 100
# connections the event loop accepts in one go before the cap can close any of them.
RESERVED_FDS = 256
# After an answer that did not read its whole body, aiohttp reads and drops the rest for this long so
# the client sees the answer instead of a reset; bounded, and nothing is inflated or kept meanwhile.
LINGER_SECONDS = 1.0
# A body this large or larger, once dropped, prompts the allocator to hand its pages back.
TRIM_AFTER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    body_stall: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024
    body_budget: int = 64 * 1024 * 1024

    def effective_max_connections(self) -> int:
        """The configured cap, lowered to stay under the process's file limit."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - RESERVED_FDS))


class RefusalLog:
    """At most `per_second` lines a second about clients refused or gone; the others are counted, and the
    count is logged once the second is over. An attacker's rate sets the metrics, not the log's size."""

    def __init__(self, per_second: int = 20) -> None:
        self.per_second = per_second
        self._second = 0
        self._lines = 0
        self._held_back = 0

    def allow(self) -> bool:
        now = int(time.monotonic())
        if now != self._second:
            if self._held_back:
                log.warning(
                    "more refusals than the log takes: not logged, counted in the metrics",
                    extra={"count": self._held_back},
                )
            self._second, self._lines, self._held_back = now, 0, 0
        if self._lines < self.per_second:
            self._lines += 1
            return True
        self._held_back += 1
        return False


class BodyBudget:
    """Bytes of request bodies held by the server at once, across every connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._trim_pending = False

    def hold(self) -> BodyHold:
        return BodyHold(self)

    def _give_back(self, n: int) -> None:
        self.in_flight -= n
        if n >= TRIM_AFTER_BYTES and not self._trim_pending:
            # Python frees the bytes at once, but glibc keeps freed heap pages mapped: without a trim a
            # burst of large bodies leaves the process at its peak size for good. At most once a second.
            self._trim_pending = True
            asyncio.get_running_loop().call_later(1.0, self._trim)

    def _trim(self) -> None:
        self._trim_pending = False
        if self.in_flight < TRIM_AFTER_BYTES:
            malloc_trim()


class BodyHold:
    """One request's share of the budget: what it has read so far, given back once, when it is dropped."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> bool:
        budget = self.budget
        if budget.in_flight + n > budget.limit:
            return False
        budget.in_flight += n
        self.held += n
        return True

    def release(self) -> None:
        if self.held:
            self.budget._give_back(self.held)
            self.held = 0


def malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator returns memory in its own way
        pass


class BodyTooLarge(Exception):
    pass


class OverBudget(Exception):
    pass


class BodyTimeout(Exception):
    def __init__(self, stalled: bool) -> None:
        super().__init__("stalled" if stalled else "too slow")
        self.stalled = stalled


async def read_body(request: web.Request, limits: HttpLimits, hold: BodyHold, max_bytes: int) -> bytes:
    """The whole body, its bytes taken from the budget through `hold` (the caller releases it)."""
    stream = request.content
    if stream.is_eof():
        # The usual case: the whole body came with the headers, and no timer is needed to read it.
        body = stream.read_nowait()
        if len(body) > max_bytes:
            raise BodyTooLarge
        if not hold.take(len(body)):
            raise OverBudget
        return body
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.body_timeout
    stall_at = deadline
    _mark_reading(request, True)
    try:
        async with asyncio.timeout(None) as timer:
            while True:
                stall_at = loop.time() + limits.body_stall
                timer.reschedule(min(stall_at, deadline))
                chunk = await stream.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge
                if not hold.take(len(chunk)):
                    raise OverBudget
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout(stalled=stall_at <= deadline) from exc
    finally:
        _mark_reading(request, False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _mark_reading(request: web.Request, reading: bool) -> None:
    protocol = request.protocol
    if isinstance(protocol, GuardedHandler):
        protocol.reading_body = reading


class GuardedHandler(RequestHandler):
    """One connection: a deadline for the first request's headers, and quiet logging of what clients
    do wrong (a malformed request or a hang-up is their problem, not a server error)."""

    def __init__(self, manager: GuardedServer, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.server = manager
        self.header_timeout = header_timeout
        self.reading_body = False
        self._header_handle: asyncio.TimerHandle | None = None

    @property
    def evictable(self) -> bool:
        """Waiting for, or still sending, its request: nothing of ours is at stake in closing it."""
        return self.transport is not None and (self.reading_body or not self._request_in_progress)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._header_handle = self._loop.call_later(self.header_timeout, self._headers_due)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None
        super().connection_lost(exc)

    def _headers_due(self) -> None:
        self._header_handle = None
        if self._request_count == 0 and self.transport is not None:
            HTTP_CONNECTIONS_CLOSED.labels("header_timeout").inc()
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, BaseException) and _clients_fault(exc):
            if not self.server.refusals.allow():
                return
            log.info(
                "bad request from client",
                extra={"error": type(exc).__name__, "detail": _short(str(exc))},
            )
            return
        super().log_exception(*args, **kw)


def _clients_fault(exc: BaseException) -> bool:
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, HttpProcessingError | ConnectionError)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class GuardedServer(Server):
    """Makes `GuardedHandler`s and keeps the number of open connections under the cap."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.max_connections = limits.effective_max_connections()
        self.open = 0
        self.refusals = RefusalLog()

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self._loop, header_timeout=self.limits.header_timeout, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open += 1
        if self.open > self.max_connections:
            self._make_room(handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open -= 1
        super().connection_lost(handler, exc)

    def _make_room(self, newcomer: RequestHandler) -> None:
        # Oldest first (insertion order): a slow or silent client is the likeliest to be old, and a
        # delivery that has just connected sends its request at once.
        for handler in self._connections:
            if handler is not newcomer and isinstance(handler, GuardedHandler) and handler.evictable:
                HTTP_CONNECTIONS_CLOSED.labels("over_capacity").inc()
                handler.force_close()
                return
        HTTP_CONNECTIONS_CLOSED.labels("refused").inc()
        newcomer.force_close()


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a `GuardedServer` with these limits."""

    def __init__(self, app: web.Application, limits: HttpLimits, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", limits.idle_timeout)
        kwargs.setdefault("lingering_time", LINGER_SECONDS)
        # GitHub never compresses a delivery; the ingress refuses any encoding before reading, so
        # nothing here ever inflates a body.
        kwargs.setdefault("auto_decompress", False)
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_server(self) -> Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            limits=self.limits,
            **self._kwargs,
        )
