"""One global order for the row locks of a unit of work, taken at its start: the stories first (by id),
then their pull request links (by repository and number). The outbox rows a unit of work writes are
written while its story locks are held, in pull-request order, so no two units of work ever wait for
each other in a circle.

Story locks are FOR NO KEY UPDATE: they serialize changes to a story, yet do not conflict with the
KEY SHARE lock PostgreSQL takes on a story whenever a row referencing it (a PR link, an audit row) is
written. With FOR UPDATE, two deliveries that had each linked a PR to the same story waited for each
other's KEY SHARE: the deadlock many PRs naming one story produced. SQLite has one writer and no row
locks; there these statements are plain reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import PullRequestLink
from github_app.db.models import Story
from github_app.domain.linking import Linked, link_pull_request
from github_app.services.repo import RepoContext


async def lock_in_order(
    session: AsyncSession,
    *,
    stories: Iterable[str | None] = (),
    links: Iterable[tuple[str, int]] = (),
) -> None:
    """Lock `stories` (ids) and then `links` ((repository key, PR number)) in key order. Rows that do
    not exist yet lock nothing; the unit of work creates them after, while holding the story locks."""
    story_ids = sorted({story_id for story_id in stories if story_id})
    if story_ids:
        await session.execute(
            select(Story.id).where(Story.id.in_(story_ids)).order_by(Story.id).with_for_update(key_share=True)
        )
    keys = sorted(set(links))
    if keys:
        await session.execute(
            select(PullRequestLink.repository_key, PullRequestLink.pr_number)
            .where(tuple_(PullRequestLink.repository_key, PullRequestLink.pr_number).in_(keys))
            .order_by(PullRequestLink.repository_key, PullRequestLink.pr_number)
            .with_for_update(key_share=True)
        )


async def lock_for_pull_request(session: AsyncSession, rc: RepoContext, pr: dict[str, Any]) -> None:
    """Before a pull request event touches anything: its story (the one it is linked to, or else the
    one its title, body or branch names), then its link."""
    key = (rc.repository.lower(), int(pr["number"]))
    story_id = (
        await session.execute(
            select(PullRequestLink.story_id).where(
                PullRequestLink.repository_key == key[0], PullRequestLink.pr_number == key[1]
            )
        )
    ).scalar()
    if story_id is None:
        named = link_pull_request(
            title=pr.get("title") or "",
            body=pr.get("body") or "",
            head_branch=(pr.get("head") or {}).get("ref") or "",
            changed_files=[],  # a link by changed files is found later; its story is locked then
            story_dir=rc.paths.story_dir,
            branch_pattern=rc.config.branch_pattern,
        )
        if isinstance(named, Linked):
            story_id = (
                await session.execute(
                    select(Story.id).where(
                        Story.project_id == rc.project.id,
                        Story.epic_number == named.epic,
                        Story.story_number == named.story,
                    )
                )
            ).scalar()
    await lock_in_order(session, stories=[story_id], links=[key])


__all__ = ["lock_for_pull_request", "lock_in_order"]
