"""Lookups shared by handlers and services."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import InstallationRepository
from github_app.db.models import Project


async def project_for_repository(session: AsyncSession, full_name: str) -> Project | None:
    """A repository belongs to the project whose repoName is its "owner/name", ignoring case."""
    stmt = (
        select(Project).where(func.lower(Project.repo_name) == full_name.lower()).order_by(Project.created_at).limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def installation_for_repository(session: AsyncSession, full_name: str) -> int | None:
    stmt = select(InstallationRepository.installation_id).where(
        InstallationRepository.full_name_key == full_name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()
