"""Lookups shared by handlers and services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import InstallationRepository
from github_app.db.models import Project

R = TypeVar("R")


async def current(session: AsyncSession, stmt: Select[Any]) -> Any:
    """The first row of `stmt` (None when there is none) as the database has it now, even when the
    session already holds an older copy: after a row lock, the version the lock protects. One statement
    (a select followed by a refresh would be two)."""
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalars().first()


async def current_one(session: AsyncSession, stmt: Select[Any]) -> Any:
    """`current` of a row that must exist: raises NoResultFound (or MultipleResultsFound) otherwise."""
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalars().one()


async def read_once(session: AsyncSession, key: Hashable, load: Callable[[], Awaitable[R]]) -> R:
    """`load()`, run once per session for `key`: the handlers of one delivery (a PR's story and its
    planning stage) ask the same questions of rows their unit of work does not change. Only for such
    reads: nothing written in the session may change the answer."""
    answers: dict[Hashable, Any] = session.info.setdefault("read_once", {})
    if key not in answers:
        answers[key] = await load()
    return answers[key]  # type: ignore[no-any-return]


async def project_for_repository(session: AsyncSession, full_name: str) -> Project | None:
    """A repository belongs to the project whose repoName is its "owner/name", ignoring case. Asked
    once per unit of work; `project_named` asks the database every time (for the one handler that
    changes a project's repoName)."""
    return await read_once(session, ("project", full_name.lower()), lambda: project_named(session, full_name))


async def project_named(session: AsyncSession, full_name: str) -> Project | None:
    stmt = (
        select(Project).where(func.lower(Project.repo_name) == full_name.lower()).order_by(Project.created_at).limit(1)
    )
    project: Project | None = (await session.execute(stmt)).scalars().first()
    return project


async def installation_for_repository(session: AsyncSession, full_name: str) -> int | None:
    stmt = select(InstallationRepository.installation_id).where(
        InstallationRepository.full_name_key == full_name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()
