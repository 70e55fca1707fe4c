"""GitHub App authentication: the app's JWT and cached installation access tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from gidgethub import apps
from gidgethub.abc import GitHubAPI

# GitHub rejects a JWT whose exp is more than 10 minutes ahead. The issue time is backdated a minute
# because GitHub's clock and ours are never quite the same, and exp stays a minute short of the cap
# for the same reason.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 9 * 60
# A JWT is reused for a while rather than signed per request (RSA signing is not free), but is
# replaced early enough that a request sent just before the switch cannot arrive expired.
JWT_REUSE_SECONDS = 7 * 60
# Installation tokens live one hour; a handler may run for a while with the token it was given,
# so a token with less than this left is replaced rather than handed out.
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)


def make_app_jwt(app_id: int, private_key_pem: str, now: float | None = None) -> str:
    """Sign the JWT that authenticates as the app itself (RS256, valid for nine minutes)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iat": issued - JWT_BACKDATE_SECONDS,
        "exp": issued + JWT_LIFETIME_SECONDS,
        "iss": str(app_id),
    }
    return jwt.encode(claims, private_key_pem, algorithm="RS256")


class AppJWTSource:
    """Hands out the app's JWT, signing a new one before the current one gets close to expiry."""

    def __init__(self, app_id: int, private_key_pem: str, *, clock: Callable[[], float] = time.time) -> None:
        self.app_id = app_id
        self._private_key_pem = private_key_pem
        self._clock = clock
        self._jwt: str | None = None
        self._replace_at = 0.0

    def __call__(self) -> str:
        now = self._clock()
        if self._jwt is None or now >= self._replace_at:
            self._jwt = make_app_jwt(self.app_id, self._private_key_pem, now)
            self._replace_at = now + JWT_REUSE_SECONDS
        return self._jwt

    def __repr__(self) -> str:
        return f"AppJWTSource(app_id={self.app_id})"


@dataclass(frozen=True)
class InstallationToken:
    """An installation access token as GitHub returned it. The token itself is kept out of the repr."""

    token: str = field(repr=False)
    expires_at: datetime
    permissions: Mapping[str, str] = field(default_factory=dict)
    repository_selection: str | None = None

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> InstallationToken:
        return cls(
            token=str(data["token"]),
            expires_at=_parse_timestamp(str(data["expires_at"])),
            permissions=dict(data.get("permissions") or {}),
            repository_selection=data.get("repository_selection"),
        )

    def usable_at(self, now: datetime, margin: timedelta = TOKEN_REFRESH_MARGIN) -> bool:
        return self.expires_at - now > margin


def _parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def fetch_installation_token(
    gh: GitHubAPI, *, installation_id: int, app_id: int, private_key_pem: str
) -> InstallationToken:
    """Ask GitHub for a new installation access token (POST /app/installations/{id}/access_tokens)."""
    # gidgethub's helper signs its own JWT with iat 60 s back and exp 9 min ahead, which is the rule
    # make_app_jwt follows too, so the helper is used as it is.
    data = await apps.get_installation_access_token(
        gh, installation_id=str(installation_id), app_id=str(app_id), private_key=private_key_pem
    )
    return InstallationToken.from_response(data)


TokenFetcher = Callable[[int], Awaitable[InstallationToken]]


class InstallationTokenCache:
    """Installation access tokens per installation, fetched once and reused until close to expiry.

    Concurrent callers asking for the same installation wait on one lock, so a burst of webhooks for
    one installation causes a single token request instead of one each.
    """

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        refresh_margin: timedelta = TOKEN_REFRESH_MARGIN,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._fetch = fetch
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"InstallationTokenCache(installations={sorted(self._tokens)})"

    def _fresh(self, installation_id: int) -> InstallationToken | None:
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.usable_at(self._clock(), self._refresh_margin):
            return cached
        return None

    async def get(self, installation_id: int) -> InstallationToken:
        cached = self._fresh(installation_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            # Whoever held the lock before us has probably fetched a token already.
            cached = self._fresh(installation_id)
            if cached is not None:
                return cached
            token = await self._fetch(installation_id)
            self._tokens[installation_id] = token
            return token

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the cached token, e.g. after GitHub answered 401 to it.

        With ``token`` given, only that token is dropped: a caller that saw an old token fail must not
        throw away the new one another caller has just fetched.
        """
        cached = self._tokens.get(installation_id)
        if cached is not None and (token is None or cached.token == token):
            del self._tokens[installation_id]

    def source(self, installation_id: int) -> InstallationTokenSource:
        return InstallationTokenSource(self, installation_id)


@dataclass(frozen=True)
class InstallationTokenSource:
    """The token supply of one installation, as a client consumes it."""

    cache: InstallationTokenCache
    installation_id: int

    async def token(self) -> str:
        return (await self.cache.get(self.installation_id)).token

    def invalidate(self, token: str) -> None:
        self.cache.invalidate(self.installation_id, token)
