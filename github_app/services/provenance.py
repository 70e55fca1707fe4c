"""Who introduced a version of a story or gate file.

A gate counts as the QA's review, and `Status: Approved` as the PM's approval, only when that person
introduced the exact content. Content is identified by its git blob, which merging, squashing,
rebasing and cherry-picking all carry unchanged, so the first time the app sees a blob decides whose
it is for good: the sender of the first push that brought it (unless a commit touching the file in
that push was authored by someone else), or the author of a PR from a fork (whose pushes the app
never sees) the first time the PR shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import ContentOrigin
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent

UNKNOWN = ""  # nobody the app can name: such content counts as no one's approval or review


@dataclass(frozen=True)
class Origin:
    """Who introduced a version: their login then, and the GitHub account id that was speaking (so a
    login renamed and reclaimed since cannot take the credit)."""

    login: str
    account_id: int | None


def push_introducer(sender_login: str, commits: list[dict[str, Any]], path: str, *, complete: bool) -> str:
    """Who introduced `path` in a push: the sender, the only identity GitHub authenticates. A commit
    touching the file authored by someone else (a merge, squash, rebase or cherry-pick of their work)
    means the sender did not write it; the author named in a commit is never credited either, since
    anyone can write any name into a commit. When the push lists only some of its commits
    (`complete` False) and none shows the file, nobody can be named."""
    touching = [c for c in commits if path in (c.get("added") or []) + (c.get("modified") or [])]
    if not touching and not complete:
        return UNKNOWN
    for commit in touching:
        author = (commit.get("author") or {}).get("username")
        if isinstance(author, str) and author and author.lower() != sender_login.lower():
            return UNKNOWN
    return sender_login


async def record_origin(
    session: AsyncSession,
    *,
    repository: str,
    blob_sha: str,
    path: str,
    introducer: str,
    introducer_id: object,
    commit_sha: str,
    ref: str,
    source: str,
) -> Origin:
    """Record `introducer` (GitHub account `introducer_id`) as the origin of `blob_sha` unless it is
    already known; whoever introduced it first."""
    account_id = introducer_id if isinstance(introducer_id, int) and not isinstance(introducer_id, bool) else None
    key = repository.lower()
    inserted = await insert_if_absent(
        session,
        ContentOrigin.__table__,  # type: ignore[arg-type]
        {
            "repository_key": key,
            "blob_sha": blob_sha,
            "path": path,
            "introducer_login": introducer,
            "introducer_id": account_id if introducer else None,
            "commit_sha": commit_sha,
            "ref": ref,
            "source": source,
            "seen_at": utcnow(),
        },
        conflict=["repository_key", "blob_sha"],
    )
    if inserted:
        return Origin(introducer, account_id if introducer else None)
    stmt = select(ContentOrigin.introducer_login, ContentOrigin.introducer_id).where(
        ContentOrigin.repository_key == key, ContentOrigin.blob_sha == blob_sha
    )
    login, known_id = (await session.execute(stmt)).one()
    return Origin(str(login), known_id)


def carried_note(introducer: str, sender: str) -> str:
    """Said when a file's version was written by someone other than who pushed it."""
    if introducer.lower() == sender.lower():
        return ""
    who = f"@{introducer}" if introducer else "someone the app cannot identify"
    return f" (this version of the file was written by {who}; @{sender} only carried it)"


async def known_origin(session: AsyncSession, repository: str, blob_sha: str) -> Origin | None:
    """Who introduced `blob_sha`, if the app has seen it; never records anything."""
    stmt = select(ContentOrigin.introducer_login, ContentOrigin.introducer_id).where(
        ContentOrigin.repository_key == repository.lower(), ContentOrigin.blob_sha == blob_sha
    )
    row = (await session.execute(stmt)).first()
    return Origin(str(row[0]), row[1]) if row is not None else None
