"""Lookups shared by handlers and services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import InstallationRepository, InstallationStatus
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


async def project_for_repository(
    session: AsyncSession, full_name: str, installation_id: int | None = None
) -> Project | None:
    """A repository belongs to the project whose repoName is its "owner/name", ignoring case. Asked
    once per unit of work; `project_named` asks the database every time (for the one handler that
    changes a project's repoName). With the delivery's `installation_id`, the installation's suspension
    comes in the same statement and is remembered for `installation_suspended`: every delivery asks
    both."""
    key = ("project", full_name.lower())
    answers: dict[Hashable, Any] = session.info.setdefault("read_once", {})
    if installation_id is None or key in answers:
        return await read_once(session, key, lambda: project_named(session, full_name))
    suspended_at = _suspension(installation_id).scalar_subquery()
    found = (await session.execute(_named(full_name).add_columns(suspended_at))).first()
    answers[key] = found[0] if found else None
    if found:
        answers[_suspended_key(installation_id)] = found[1] is not None
    return answers[key]  # type: ignore[no-any-return]


def _named(full_name: str) -> Select[Any]:
    return (
        select(Project).where(func.lower(Project.repo_name) == full_name.lower()).order_by(Project.created_at).limit(1)
    )


async def project_named(session: AsyncSession, full_name: str) -> Project | None:
    project: Project | None = (await session.execute(_named(full_name))).scalars().first()
    return project


def _suspension(installation_id: int) -> Select[Any]:
    return select(InstallationStatus.suspended_at).where(InstallationStatus.installation_id == installation_id)


def _suspended_key(installation_id: int) -> Hashable:
    return ("suspended", installation_id)


async def is_suspended(session: AsyncSession, installation_id: int) -> bool:
    """Whether the account owner suspended the installation (asked of the database every time)."""
    return (await session.execute(_suspension(installation_id))).scalar_one_or_none() is not None


async def installation_suspended(session: AsyncSession, installation_id: int) -> bool:
    """`is_suspended`, once per unit of work (nothing a delivery's handlers write suspends it)."""
    return await read_once(session, _suspended_key(installation_id), lambda: is_suspended(session, installation_id))


async def installation_for_repository(session: AsyncSession, full_name: str) -> int | None:
    stmt = select(InstallationRepository.installation_id).where(
        InstallationRepository.full_name_key == full_name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()
