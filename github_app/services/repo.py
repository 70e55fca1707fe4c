"""What a handler needs to know about the repository an event came from: its marketplace project, its
installation client, and its BMAD layout and app configuration (read from the default branch, so a
pull request cannot loosen the rules it is judged by)."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI

from github_app.bmad.core_config import CORE_CONFIG_PATH, BmadPaths, parse_core_config
from github_app.bmad.layout import LAYOUT_FILES, BmadLayout, detect_layout
from github_app.bmad.repo_config import REPO_CONFIG_PATH, RepoConfig, effective_paths, parse_repo_config
from github_app.db.models import Project
from github_app.db.queries import installation_for_repository, installation_suspended, project_for_repository
from github_app.handling import HandlerContext, PermanentFailure

log = logging.getLogger(__name__)

LAYOUT_FILE_MAX_BYTES = 64 * 1024


class RepoNotes(tuple[str, ...]):
    """The configuration problems a pull request shows, carrying the one-line description of the
    repository's BMAD layout beside them (passed wherever the problems already go)."""

    layout: str | None

    def __new__(cls, problems: tuple[str, ...] = (), *, layout: str | None = None) -> RepoNotes:
        notes = super().__new__(cls, problems)
        notes.layout = layout
        return notes


class FileTooLarge(Exception):
    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(f"{path} is {size} bytes, over the {limit}-byte limit")


@dataclass
class RemoteFile:
    path: str
    content: bytes
    blob_sha: str


@dataclass
class RepoContext:
    project: Project
    repository: str
    installation_id: int
    default_branch: str
    gh: GitHubAPI
    paths: BmadPaths = field(default_factory=BmadPaths)
    config: RepoConfig = field(default_factory=RepoConfig)
    layout: BmadLayout = field(default_factory=lambda: detect_layout({}))

    @property
    def config_problems(self) -> RepoNotes:
        core = tuple(f"{CORE_CONFIG_PATH}: {p}" for p in self.paths.problems)
        v6 = tuple(p for p in self.layout.problems if not p.startswith(CORE_CONFIG_PATH))
        app = tuple(f"{REPO_CONFIG_PATH}: {p}" for p in self.config.problems)
        return RepoNotes(core + v6 + app, layout=self.layout.describe(self.default_branch))

    async def fetch(self, path: str, ref: str, *, max_bytes: int | None = None) -> RemoteFile | None:
        return await fetch_file(self.gh, self.repository, path, ref, max_bytes=max_bytes)


async def fetch_file(
    gh: GitHubAPI, repository: str, path: str, ref: str, *, max_bytes: int | None = None
) -> RemoteFile | None:
    """A file at a commit through the contents API; None when it does not exist there."""
    try:
        # gidgethub's second argument is URI-template variables, not a query: the query goes in the URL.
        data: Any = await gh.getitem(f"/repos/{repository}/contents/{quote(path)}?ref={quote(ref, safe='')}")
    except BadRequest as exc:
        if exc.status_code == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    size = int(data.get("size") or 0)
    if max_bytes is not None and size > max_bytes:
        raise FileTooLarge(path, size, max_bytes)
    content = base64.b64decode(data.get("content") or "")
    return RemoteFile(path, content, str(data.get("sha") or ""))


async def load_repo_context(ctx: HandlerContext, data: dict[str, Any]) -> RepoContext | None:
    """None when the repository belongs to no marketplace project, or its installation is suspended:
    its events change nothing."""
    repo = data.get("repository") or {}
    full_name = repo.get("full_name")
    if not isinstance(full_name, str):
        return None
    installation_id = (data.get("installation") or {}).get("id")
    if not isinstance(installation_id, int):
        installation_id = None
    project = await project_for_repository(ctx.session, full_name, installation_id)
    if project is None:
        log.info("repository is not linked to a marketplace project", extra={"repository": full_name})
        return None
    if installation_id is None:
        # A delivery without an installation (a repository or organisation webhook pointed at the app,
        # a hand-made redelivery): the installation GitHub last reported for the repository serves it.
        installation_id = await installation_for_repository(ctx.session, full_name)
        if installation_id is None:
            raise PermanentFailure(
                f"delivery for {full_name} carries no installation id and no installation serves the repository"
            )
        log.info("delivery without an installation; using the repository's", extra={"repository": full_name})
    if await installation_suspended(ctx.session, installation_id):
        # The account owner suspended the app: it must not act on their repositories until unsuspended.
        log.info(
            "installation is suspended; delivery not acted on",
            extra={"repository": full_name, "installation_id": installation_id},
        )
        return None
    if ctx.runtime.github is None:
        # Retrying helps: the operator configures the app, then the delivery goes through.
        raise RuntimeError("GitHub App credentials are not configured (GITHUB_APP_ID, GITHUB_PRIVATE_KEY)")
    gh = await ctx.runtime.github.installation_client(installation_id)
    default_branch = str(repo.get("default_branch") or repo.get("master_branch") or "main")
    rc = RepoContext(project, full_name, installation_id, default_branch, gh)
    cache = ctx.runtime.config_cache
    if _changes_configuration(data, default_branch):
        cache.forget(full_name)
    cached = cache.get(full_name)
    if cached is None:
        app = await rc.fetch(REPO_CONFIG_PATH, default_branch)
        config = parse_repo_config(app.content if app else None)
        files: dict[str, bytes | None] = {}
        for path in LAYOUT_FILES:
            try:
                found = await rc.fetch(path, default_branch, max_bytes=LAYOUT_FILE_MAX_BYTES)
            except FileTooLarge:
                found = RemoteFile(path, b"\0" * (LAYOUT_FILE_MAX_BYTES + 1), "")  # reported as too large
            files[path] = found.content if found else None
        layout = detect_layout(files, config.path_overrides)
        core = parse_core_config(files[CORE_CONFIG_PATH])
        cached = (effective_paths(core, config), config, layout)
        cache.put(full_name, cached)
    rc.paths, rc.config, rc.layout = cached
    return rc


def _changes_configuration(data: dict[str, Any], default_branch: str) -> bool:
    """A push to the default branch whose commits touch a configuration file. (A push of more than
    20 commits may not list them all; the cache's minute bounds that.)"""
    if data.get("ref") != f"refs/heads/{default_branch}":
        return False
    watched = {REPO_CONFIG_PATH, *LAYOUT_FILES}
    for commit in data.get("commits") or []:
        for key in ("added", "modified", "removed"):
            if watched.intersection(commit.get(key) or ()):
                return True
    return False
