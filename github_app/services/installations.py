"""Installations of the app: GitHubInstallation, the repository map and suspension, kept current by
installation and installation_repositories events, and read before any other delivery is acted on."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from gidgethub import sansio
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import InstallationRepository, InstallationStatus, OutboxItem, WebhookDelivery
from github_app.db.models import GitHubInstallation
from github_app.db.queries import project_named
from github_app.db.types import new_id, utcnow
from github_app.db.upsert import upsert
from github_app.handling import HandlerContext, PermanentFailure

log = logging.getLogger(__name__)


def _installation(event: sansio.Event) -> dict[str, Any]:
    inst = event.data.get("installation")
    if not isinstance(inst, dict) or not isinstance(inst.get("id"), int):
        raise PermanentFailure(f"{event.event} delivery has no installation id")
    return inst


def _repository_ids(repos: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in repos if isinstance(r.get("id"), int)]


async def _save_installation(session: AsyncSession, inst: dict[str, Any]) -> None:
    account = inst.get("account") or {}
    await upsert(
        session,
        GitHubInstallation.__table__,
        {
            "id": new_id(),
            "installationId": inst["id"],
            "accountId": account.get("id", 0),
            "accountLogin": account.get("login", ""),
            "createdAt": utcnow(),
        },
        conflict=["installationId"],
        update=["accountId", "accountLogin"],
    )


async def _reported_at(ctx: HandlerContext) -> datetime:
    """When GitHub told us (the delivery's arrival): the order of reports about one repository."""
    stmt = select(WebhookDelivery.received_at).where(WebhookDelivery.delivery_id == ctx.delivery_id)
    return (await ctx.session.execute(stmt)).scalar_one_or_none() or utcnow()


async def _add_repositories(ctx: HandlerContext, installation_id: int, repos: list[dict[str, Any]]) -> None:
    """Map each repository to this installation. A repository moves between installations (an
    organisation transfer; the app removed and installed again while the `deleted` delivery was
    missed), and a name can pass to another repository (deleted and created again, renamed away): the
    newest report GitHub made about a repository or a name wins, and a move is logged. An older
    report processed late (a retry) changes nothing."""
    session = ctx.session
    reported_at = await _reported_at(ctx)
    T = InstallationRepository
    for repo in repos:
        if not isinstance(repo.get("id"), int) or not isinstance(repo.get("full_name"), str):
            log.warning("repository without id or full name ignored", extra={"installation": installation_id})
            continue
        key = repo["full_name"].lower()
        known = (
            (await session.execute(select(T).where(or_(T.repository_id == repo["id"], T.full_name_key == key))))
            .scalars()
            .all()
        )
        if any(row.added_at > reported_at for row in known):
            log.info(
                "older report of a repository's installation ignored",
                extra={"repository": repo["full_name"], "installation": installation_id},
            )
            continue
        for row in known:
            if row.repository_id == repo["id"] and row.installation_id == installation_id:
                continue
            log.warning(
                "repository moved to another installation"
                if row.repository_id == repo["id"]
                else "repository name now belongs to another repository",
                extra={
                    "audit": "installation_repository_moved",
                    "repository": repo["full_name"],
                    "repository_id": repo["id"],
                    "previous_repository": row.full_name,
                    "previous_repository_id": row.repository_id,
                    "previous_installation": row.installation_id,
                    "installation": installation_id,
                },
            )
            if row.repository_id != repo["id"]:
                await session.delete(row)
        await session.flush()
        await upsert(
            session,
            T.__table__,
            {
                "repository_id": repo["id"],
                "installation_id": installation_id,
                "full_name": repo["full_name"],
                "full_name_key": key,
                "added_at": reported_at,
            },
            conflict=["repository_id"],
            update=["installation_id", "full_name", "full_name_key", "added_at"],
        )


async def _set_suspended(session: AsyncSession, installation_id: int, suspended: bool) -> None:
    now = utcnow()
    await upsert(
        session,
        InstallationStatus.__table__,
        {"installation_id": installation_id, "suspended_at": now if suspended else None, "updated_at": now},
        conflict=["installation_id"],
        update=["suspended_at", "updated_at"],
    )


async def installation_active(ctx: HandlerContext, event: sansio.Event) -> None:
    """created, new_permissions_accepted, unsuspend: the installation and its repositories, in use."""
    inst = _installation(event)
    await _save_installation(ctx.session, inst)
    await _add_repositories(ctx, inst["id"], event.data.get("repositories") or [])
    await _set_suspended(ctx.session, inst["id"], False)


async def installation_suspended(ctx: HandlerContext, event: sansio.Event) -> None:
    inst = _installation(event)
    await _save_installation(ctx.session, inst)
    await _set_suspended(ctx.session, inst["id"], True)


async def installation_deleted(ctx: HandlerContext, event: sansio.Event) -> None:
    installation_id = _installation(event)["id"]
    session = ctx.session
    await session.execute(
        delete(InstallationRepository).where(InstallationRepository.installation_id == installation_id)
    )
    await session.execute(delete(InstallationStatus).where(InstallationStatus.installation_id == installation_id))
    await session.execute(delete(GitHubInstallation).where(GitHubInstallation.installation_id == installation_id))
    # Nothing can be written to an uninstalled repository; pending check runs and comments go too.
    await session.execute(delete(OutboxItem).where(OutboxItem.installation_id == installation_id))


async def repositories_added(ctx: HandlerContext, event: sansio.Event) -> None:
    inst = _installation(event)
    await _save_installation(ctx.session, inst)
    await _add_repositories(ctx, inst["id"], event.data.get("repositories_added") or [])


async def repositories_removed(ctx: HandlerContext, event: sansio.Event) -> None:
    installation_id = _installation(event)["id"]
    ids = _repository_ids(event.data.get("repositories_removed") or [])
    if ids:
        await ctx.session.execute(
            delete(InstallationRepository).where(
                InstallationRepository.installation_id == installation_id,
                InstallationRepository.repository_id.in_(ids),
            )
        )


def _former_name(event: sansio.Event) -> str | None:
    """The repository's full name before a `renamed` (its name changed) or `transferred` (its owner
    changed) delivery; None when the payload does not say."""
    repo = event.data.get("repository") or {}
    changes = event.data.get("changes") or {}
    owner = (repo.get("owner") or {}).get("login")
    name = repo.get("name")
    if event.data.get("action") == "renamed":
        former = ((changes.get("repository") or {}).get("name") or {}).get("from")
        return f"{owner}/{former}" if isinstance(owner, str) and isinstance(former, str) else None
    previous = (changes.get("owner") or {}).get("from") or {}
    former_owner = (previous.get("user") or previous.get("organization") or {}).get("login")
    return f"{former_owner}/{name}" if isinstance(former_owner, str) and isinstance(name, str) else None


async def repository_renamed(ctx: HandlerContext, event: sansio.Event) -> None:
    """A repository renamed or transferred keeps its project and its installation: GitHub's numeric
    repository id is the same, only the name the deliveries carry changed. The project's repoName and
    the repository map follow the new name, with an audit line; a project already named after the new
    name (the marketplace was quicker) is left as it is."""
    repo = event.data.get("repository") or {}
    full_name, repository_id = repo.get("full_name"), repo.get("id")
    former = _former_name(event)
    if not isinstance(full_name, str) or not isinstance(repository_id, int) or former is None:
        log.warning("repository rename without its names ignored", extra={"delivery_id": ctx.delivery_id})
        return
    session = ctx.session
    reported_at = await _reported_at(ctx)
    mapped = await session.get(InstallationRepository, repository_id)
    if mapped is not None and mapped.added_at <= reported_at:  # as in `_add_repositories`: the newest report wins
        mapped.full_name, mapped.full_name_key, mapped.added_at = full_name, full_name.lower(), reported_at
    if await project_named(session, full_name) is not None:
        return
    project = await project_named(session, former)
    if project is None:
        return
    project.repo_name = full_name
    project.updated_at = utcnow()
    log.warning(
        "repository renamed; its project follows",
        extra={
            "audit": "project_repository_renamed",
            "project_id": project.id,
            "repository_id": repository_id,
            "previous_repository": former,
            "repository": full_name,
        },
    )
