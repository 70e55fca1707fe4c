"""The process's shared resources, built once: settings, database engine and sessions, the HTTP
session and the GitHub App client. Handlers reach them through their HandlerContext."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from github_app.config import Settings
from github_app.db.engine import is_sqlite, make_sessionmaker, settings_engine
from github_app.db.paths import ensure_sqlite_directory

if TYPE_CHECKING:  # both load only where GitHub is spoken to: the HTTP process never is
    from github_app.github.client import GitHubApp
    from github_app.services.config_cache import ConfigCache

log = logging.getLogger(__name__)


class BackgroundSender(Protocol):
    """What the runtime's users need of the outbox sender, which is itself built from a Runtime (so the
    runtime names no sender class): to run it, and to tell it that new work is due."""

    def wake(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    # None until the app's id and private key are configured: deliveries then wait in the inbox.
    github: GitHubApp | None = None
    config_cache: ConfigCache = field(default_factory=lambda: _config_cache())
    # The worker's process sends the outbox beside it; an HTTP-only process has none.
    outbox_sender: BackgroundSender | None = None

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.settings.database_url)

    @classmethod
    async def create(cls, settings: Settings, *, with_github: bool = True) -> Runtime:
        """`with_github=False`: an HTTP-only process, which stores deliveries and never acts on them."""
        ensure_sqlite_directory(settings.database_url)
        engine = settings_engine(settings)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        runtime = cls(settings, engine, make_sessionmaker(engine), http)
        if with_github:
            runtime.github = build_github(settings, http)
        return runtime

    async def close(self) -> None:
        await self.http.close()
        await self.engine.dispose()


def _config_cache() -> ConfigCache:
    from github_app.services.config_cache import ConfigCache

    return ConfigCache()


def build_github(settings: Settings, http: aiohttp.ClientSession) -> GitHubApp | None:
    if settings.github_app_id is None or settings.github_private_key is None:
        return None
    from github_app.github.client import GitHubApp

    return GitHubApp(settings.github_app_id, settings.github_private_key, settings.github_api_url, http)
