"""A push as the workflow reads it: the payload's parts, the net change of each file, each changed file
as the pushed commit has it, and what was refused or warned about. Shared by the v4 and the v6 parts of
the push handler (`services.pushes`, `services.v6_pushes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from github_app.db.types import from_github_time, utcnow
from github_app.services.provenance import push_introducer
from github_app.services.repo import FileTooLarge, RemoteFile, RepoContext

ZERO_SHA = "0" * 40
PUSH_COMMITS_CAP = 20  # GitHub lists at most 20 commits in a push payload


class Push:
    """The parts of a push payload the workflow reads, and the net effect on each file."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.ref: str = data.get("ref") or ""
        self.before: str = data.get("before") or ZERO_SHA
        self.after: str = data.get("after") or ZERO_SHA
        self.commits: list[dict[str, Any]] = data.get("commits") or []
        sender = data.get("sender") or {}
        self.sender_login: str = sender.get("login") or (data.get("pusher") or {}).get("name") or ""
        self.sender_type: str | None = sender.get("type")
        self.sender_id: object = sender.get("id")

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    def changes_from_commits(self) -> dict[str, str]:
        status: dict[str, str] = {}
        for commit in self.commits:
            for path in commit.get("added") or []:
                status[path] = "modified" if status.get(path) == "removed" else "added"
            for path in commit.get("modified") or []:
                status[path] = "added" if status.get(path) == "added" else "modified"
            for path in commit.get("removed") or []:
                status[path] = "removed"
        return status

    def last_commit_touching(self, path: str) -> dict[str, Any] | None:
        for commit in reversed(self.commits):
            if path in (commit.get("added") or []) + (commit.get("modified") or []):
                return commit
        return None

    @property
    def complete(self) -> bool:
        """Whether the payload lists every commit of the push (GitHub lists at most 20)."""
        return len(self.commits) < PUSH_COMMITS_CAP or self.before == ZERO_SHA

    def introducer(self, path: str) -> str:
        return push_introducer(self.sender_login, self.commits, path, complete=self.complete)

    def committed_at(self, path: str) -> datetime:
        commit = self.last_commit_touching(path) or self.data.get("head_commit") or {}
        return from_github_time(commit.get("timestamp")) or utcnow()


async def changed_files(rc: RepoContext, push: Push) -> dict[str, str]:
    """path -> added | modified | removed. A push of more than 20 commits lists only 20: then the
    compare API tells every changed file."""
    if len(push.commits) < PUSH_COMMITS_CAP or push.before == ZERO_SHA:
        return push.changes_from_commits()
    compare = await rc.gh.getitem(f"/repos/{rc.repository}/compare/{push.before}...{push.after}")
    changes: dict[str, str] = {}
    for f in compare.get("files") or []:
        if f.get("status") == "renamed" and f.get("previous_filename"):
            changes[f["previous_filename"]] = "removed"
        changes[f["filename"]] = (
            "removed" if f.get("status") == "removed" else ("added" if f.get("status") == "added" else "modified")
        )
    return changes


@dataclass
class Fetched:
    """A story or gate file as the pushed commit has it, read before any row lock is taken."""

    path: str
    status: str
    remote: RemoteFile | None = None
    error: str | None = None
    origin: str = ""  # the login of whoever introduced this version
    origin_id: int | None = None  # and their GitHub account id


async def read_changed(rc: RepoContext, push: Push, path: str, status: str, max_bytes: int) -> Fetched:
    if status == "removed":
        return Fetched(path, status)
    try:
        return Fetched(path, status, await rc.fetch(path, push.after, max_bytes=max_bytes))
    except FileTooLarge as exc:
        return Fetched(path, status, error=str(exc))


@dataclass
class StoryFileReport:
    refused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
