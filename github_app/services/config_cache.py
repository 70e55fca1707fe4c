"""Each repository's BMAD paths, layout and app configuration, kept for a minute per worker process."""

from __future__ import annotations

import time

from github_app.bmad.core_config import BmadPaths
from github_app.bmad.layout import BmadLayout
from github_app.bmad.repo_config import RepoConfig

CachedConfig = tuple[BmadPaths, RepoConfig, BmadLayout]


class ConfigCache:
    """Reading the configuration files on every delivery would spend an installation's hourly budget on
    files that rarely change, so they are kept for a minute. A push to the default branch that touches
    one of them is read at once."""

    TTL_SECONDS = 60.0

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, CachedConfig]] = {}

    def get(self, repository: str) -> CachedConfig | None:
        entry = self._entries.get(repository.lower())
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, repository: str, value: CachedConfig) -> None:
        self._entries[repository.lower()] = (time.monotonic() + self.TTL_SECONDS, value)

    def forget(self, repository: str) -> None:
        self._entries.pop(repository.lower(), None)
