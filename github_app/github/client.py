"""The one GitHub API client the app uses: gidgethub's aiohttp client with app authentication,
cached installation tokens, and retries that respect GitHub's rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import gidgethub.aiohttp
from gidgethub import BadRequest
from gidgethub.abc import JSON_CONTENT_TYPE
from uritemplate import variable

from github_app.github.auth import (
    TOKEN_REFRESH_MARGIN,
    AppJWTSource,
    InstallationToken,
    InstallationTokenCache,
    fetch_installation_token,
)
from github_app.github.metrics import record_api_call

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_REQUESTER = "bmad-marketplace-app"

# Errors where no usable answer came back; worth another try like a 5xx.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientConnectionError, TimeoutError)

Sleep = Callable[[float], Awaitable[None]]

# When the work making a request must be finished (time.monotonic()); None: no deadline but the policy's.
_retry_deadline: ContextVar[float | None] = ContextVar("github_retry_deadline", default=None)


@contextlib.contextmanager
def retry_deadline(seconds: float) -> Iterator[None]:
    """Requests made inside give up rather than wait past `seconds` from now.

    A webhook handler runs under the worker's deadline: a retry wait that ends after it only turns a
    clear GitHub error into a timeout, and holds the delivery's lease for nothing. Given up early, the
    delivery is retried on the inbox's own schedule instead.
    """
    token = _retry_deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _retry_deadline.reset(token)


def _time_left() -> float | None:
    deadline = _retry_deadline.get()
    return None if deadline is None else deadline - time.monotonic()


class RetryBudgetExceeded(Exception):
    """GitHub asked the app to hold its requests for longer than the caller can wait."""


# Set while a request that creates something is in flight: such a request is never repeated after an
# answer that may hide a success (a 5xx, a lost connection). GitHub documents that a 5xx to a POST may
# still have created the object; the caller looks for it before creating again.
_CREATING: ContextVar[bool] = ContextVar("github_creating", default=False)
# Set by a caller that paces itself across processes (the outbox sender): a rate-limit answer is handed
# back to it at once instead of being waited out here, so that it can tell every other process.
_HAND_BACK_RATE_LIMITS: ContextVar[bool] = ContextVar("github_hand_back_rate_limits", default=False)


class RateLimited(Exception):
    """GitHub asked for silence for `seconds` (Retry-After, a primary limit's reset, or a secondary
    limit's back-off)."""

    def __init__(self, method: str, path: str, seconds: float, reason: str) -> None:
        super().__init__(f"GitHub {method} {path}: {reason}, wait {seconds:.1f}s")
        self.seconds = seconds
        self.reason = reason


@contextlib.contextmanager
def rate_limits_to_caller() -> Iterator[None]:
    """Within this block, requests raise RateLimited instead of waiting a rate limit out."""
    marker = _HAND_BACK_RATE_LIMITS.set(True)
    try:
        yield
    finally:
        _HAND_BACK_RATE_LIMITS.reset(marker)


class AnswerLost(Exception):
    """A request that creates something got no usable answer: it may or may not have been carried out."""

    def __init__(self, method: str, path: str, outcome: str) -> None:
        super().__init__(f"GitHub {method} {path} {outcome}: it may have been carried out")
        self.outcome = outcome


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries before the error is handed to the caller.

    Waits are bounded by the number of attempts, by the total time slept (``max_total_wait``) and, inside
    ``retry_deadline`` (every webhook handler), by the time left to the caller.
    """

    max_attempts: int = 5
    max_total_wait: float = 600.0
    # GitHub: without retry-after or an exhausted primary limit, wait at least a minute, then back off
    # exponentially.
    min_backoff: float = 60.0
    error_backoff: float = 1.0
    max_error_backoff: float = 30.0
    # x-ratelimit-reset is a whole second on GitHub's clock; waking a little later avoids being
    # rejected again by a request that lands just before the reset.
    reset_margin: float = 1.0


@dataclass(frozen=True)
class RetryDecision:
    delay: float
    reason: str
    rate_limited: bool


def _retry_after_seconds(value: str, now: float) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _is_secondary_limit(body: bytes) -> bool:
    lowered = body.lower()
    return b"secondary rate limit" in lowered or b"abuse detection" in lowered


def decide_retry(
    status: int, headers: Mapping[str, str], body: bytes, *, attempt: int, policy: RetryPolicy, now: float
) -> RetryDecision | None:
    """Whether a response is worth retrying, and after how long. ``None``: hand it to the caller."""
    if status in (403, 429):
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            delay = _retry_after_seconds(retry_after, now)
            if delay is not None:
                return RetryDecision(delay, "retry-after", rate_limited=True)
        reset = headers.get("x-ratelimit-reset")
        if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
            try:
                delay = max(0.0, float(reset) - now) + policy.reset_margin
            except ValueError:
                delay = policy.min_backoff
            return RetryDecision(delay, "primary rate limit", rate_limited=True)
        if status == 429 or _is_secondary_limit(body):
            delay = policy.min_backoff * 2 ** (attempt - 1) * random.uniform(1.0, 1.25)
            return RetryDecision(delay, "secondary rate limit", rate_limited=True)
        # A plain 403 is a permission problem: asking again changes nothing.
        return None
    if status >= 500:
        return RetryDecision(error_backoff(policy, attempt), "server error", rate_limited=False)
    return None


def error_backoff(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff with jitter, so clients that failed together do not come back together."""
    step = min(policy.max_error_backoff, policy.error_backoff * 2 ** (attempt - 1))
    return step * random.uniform(0.5, 1.0)


class RateLimitGate:
    """Holds back every client that spends the same rate limit once one of them has been told to wait.

    GitHub counts limits per installation (and per app for JWT calls); after a rate-limit answer it
    expects silence, and requests sent meanwhile by other handlers only prolong the penalty.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._closed_until = 0.0

    def close_for(self, seconds: float) -> None:
        self._closed_until = max(self._closed_until, self._clock() + seconds)

    def remaining(self) -> float:
        return max(0.0, self._closed_until - self._clock())


class TokenSource(Protocol):
    async def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's aiohttp client, with retries and rate-limit handling in the transport.

    Credentials are looked up for every request rather than fixed at construction, so a client kept
    for a long job keeps working after its installation token has been replaced.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        requester: str = DEFAULT_REQUESTER,
        *,
        base_url: str = DEFAULT_API_URL,
        oauth_token: str | None = None,
        jwt_source: Callable[[], str] | None = None,
        token_source: TokenSource | None = None,
        retry_policy: RetryPolicy | None = None,
        gate: RateLimitGate | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if sum(c is not None for c in (oauth_token, jwt_source, token_source)) > 1:
            raise ValueError("give at most one of oauth_token, jwt_source and token_source")
        super().__init__(session, requester, oauth_token=oauth_token, base_url=base_url)
        self._jwt_source = jwt_source
        self._token_source = token_source
        self.retry_policy = retry_policy or RetryPolicy()
        self._gate = gate or RateLimitGate()
        self._sleep = sleep or asyncio.sleep

    def __repr__(self) -> str:
        if self._jwt_source is not None:
            auth = "app"
        elif self._token_source is not None:
            auth = "installation"
        else:
            auth = "token" if self.oauth_token is not None else "anonymous"
        return f"GitHubClient(base_url={self.base_url!r}, auth={auth})"

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def create(self, url: str, data: Any) -> Any:
        """POST something new, at most once: an answer that may hide a success (5xx, no response)
        raises AnswerLost instead of being retried. Rate-limit refusals are still waited out."""
        marker = _CREATING.set(True)
        try:
            return await self.post(url, data=data)
        finally:
            _CREATING.reset(marker)

    def _get_app_jwt(self) -> str | None:
        if self._jwt_source is not None:
            return self._jwt_source()
        return super()._get_app_jwt()

    async def _make_request(
        self,
        method: str,
        url: str,
        url_vars: Mapping[str, variable.VariableValue] | None,
        data: Any,
        accept: str,
        jwt: str | None = None,
        oauth_token: str | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[bytes, str | None, int]:
        send = functools.partial(
            super()._make_request,
            method,
            url,
            url_vars,
            data,
            accept,
            content_type=content_type,
            extra_headers=extra_headers,
        )
        source = self._token_source
        if source is None or jwt is not None or oauth_token is not None:
            return await send(jwt=jwt, oauth_token=oauth_token)
        token = await source.token()
        try:
            return await send(oauth_token=token)
        except BadRequest as exc:
            if exc.status_code != 401:
                raise
        # A cached token GitHub no longer accepts (revoked, app reinstalled): fetch a new one and try
        # once more; a second 401 is a real authorisation problem and reaches the caller.
        source.invalidate(token)
        return await send(oauth_token=await source.token())

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        policy = self.retry_policy
        path = urlsplit(url).path
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            hold = min(self._gate.remaining(), max(0.0, policy.max_total_wait - waited))
            if hold > 0 and _HAND_BACK_RATE_LIMITS.get():
                raise RateLimited(method, path, hold, "held back after a rate limit")
            left = _time_left()
            if left is not None and hold > left:
                raise RetryBudgetExceeded(
                    f"GitHub's rate limit holds requests for another {hold:.0f}s, longer than the "
                    f"{max(0.0, left):.0f}s left to this work"
                )
            if hold > 0:
                await self.sleep(hold)
                waited += hold
            response: tuple[int, Mapping[str, str], bytes] | None = None
            try:
                response = await super()._request(method, url, headers, body)
            except CONNECTION_ERRORS as exc:
                record_api_call(method, "error")
                failure: BaseException = exc
                outcome = f"unreachable ({type(exc).__name__})"
                decision = RetryDecision(error_backoff(policy, attempt), "no response", rate_limited=False)
            else:
                status, response_headers, response_body = response
                record_api_call(method, status)
                found = decide_retry(
                    status, response_headers, response_body, attempt=attempt, policy=policy, now=time.time()
                )
                if found is None:
                    return response
                outcome, decision = f"answered {status}", found
            if decision.rate_limited and _HAND_BACK_RATE_LIMITS.get():
                self._gate.close_for(decision.delay)
                raise RateLimited(method, path, decision.delay, decision.reason)
            if _CREATING.get() and not decision.rate_limited:
                # A rate-limit refusal created nothing and is waited out below; anything else may hide
                # a success, and repeating it would create a second object.
                log.warning("GitHub %s %s %s on a create; not repeated", method, path, outcome)
                raise AnswerLost(method, path, outcome)
            left = _time_left()
            past_deadline = left is not None and decision.delay > left
            if attempt >= policy.max_attempts or waited + decision.delay > policy.max_total_wait or past_deadline:
                log.warning(
                    "GitHub %s %s %s (%s) on attempt %d; giving up%s",
                    method,
                    path,
                    outcome,
                    decision.reason,
                    attempt,
                    f": waiting {decision.delay:.0f}s would pass the deadline" if past_deadline else "",
                )
                if decision.rate_limited:
                    # GitHub still expects silence from every client spending this limit.
                    self._gate.close_for(decision.delay)
                # gidgethub turns the last response into its usual exception for the caller.
                if response is not None:
                    return response
                raise failure
            log.warning(
                "GitHub %s %s %s (%s) on attempt %d; retrying in %.2fs",
                method,
                path,
                outcome,
                decision.reason,
                attempt,
                decision.delay,
            )
            if decision.rate_limited:
                # Waited out at the gate at the top of the loop, together with every other client
                # spending the same limit.
                self._gate.close_for(decision.delay)
            else:
                await self.sleep(decision.delay)
                waited += decision.delay


class GitHubApp:
    """Builds clients for the app: one authenticated as the app, one per installation.

    One instance per process: it holds the token cache and the rate-limit gates that every handler's
    client shares.
    """

    def __init__(
        self,
        app_id: int,
        private_key_pem: str,
        api_url: str,
        session: aiohttp.ClientSession,
        requester: str = DEFAULT_REQUESTER,
        *,
        retry_policy: RetryPolicy | None = None,
        token_refresh_margin: timedelta = TOKEN_REFRESH_MARGIN,
        sleep: Sleep | None = None,
    ) -> None:
        self.app_id = app_id
        self.api_url = api_url or DEFAULT_API_URL
        self.requester = requester
        self.retry_policy = retry_policy or RetryPolicy()
        self._private_key_pem = private_key_pem
        self._session = session
        self._sleep = sleep
        self._jwt = AppJWTSource(app_id, private_key_pem)
        self.tokens = InstallationTokenCache(self._fetch_token, refresh_margin=token_refresh_margin)
        self._app_gate = RateLimitGate()
        self._installation_gates: dict[int, RateLimitGate] = {}

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, api_url={self.api_url!r})"

    def _client(self, gate: RateLimitGate, **auth: Any) -> GitHubClient:
        return GitHubClient(
            self._session,
            self.requester,
            base_url=self.api_url,
            retry_policy=self.retry_policy,
            gate=gate,
            sleep=self._sleep,
            **auth,
        )

    def hold_installation(self, installation_id: int, seconds: float) -> None:
        """Every client of this installation in this process waits `seconds` before its next request
        (a penalty another process was told about)."""
        self._installation_gates.setdefault(installation_id, RateLimitGate()).close_for(seconds)

    def app_client(self) -> GitHubClient:
        """A client authenticated as the app (JWT): /app endpoints, installation tokens, deliveries."""
        return self._client(self._app_gate, jwt_source=self._jwt)

    async def installation_client(self, installation_id: int) -> GitHubClient:
        """A client acting as one installation, with its token taken from the shared cache.

        The token is fetched here already, so an installation that is gone fails now rather than on
        the handler's first call.
        """
        await self.tokens.get(installation_id)
        gate = self._installation_gates.setdefault(installation_id, RateLimitGate())
        return self._client(gate, token_source=self.tokens.source(installation_id))

    async def _fetch_token(self, installation_id: int) -> InstallationToken:
        return await fetch_installation_token(
            self.app_client(),
            installation_id=installation_id,
            app_id=self.app_id,
            private_key_pem=self._private_key_pem,
        )


__all__ = [
    "DEFAULT_API_URL",
    "AnswerLost",
    "GitHubApp",
    "GitHubClient",
    "RateLimitGate",
    "RateLimited",
    "RetryBudgetExceeded",
    "RetryDecision",
    "RetryPolicy",
    "TokenSource",
    "decide_retry",
    "error_backoff",
    "rate_limits_to_caller",
    "retry_deadline",
]
