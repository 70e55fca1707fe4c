"""installation and installation_repositories: keep GitHubInstallation and the repository map current."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio
from sqlalchemy import delete

from github_app.db.app_tables import InstallationRepository, InstallationStatus, OutboxItem
from github_app.db.models import GitHubInstallation
from github_app.db.types import new_id, utcnow
from github_app.db.upsert import upsert
from github_app.handling import HandlerContext, PermanentFailure

router = routing.Router()


def _installation(event: sansio.Event) -> dict[str, Any]:
    inst = event.data.get("installation")
    if not isinstance(inst, dict) or not isinstance(inst.get("id"), int):
        raise PermanentFailure(f"{event.event} delivery has no installation id")
    return inst


async def _save_installation(ctx: HandlerContext, inst: dict[str, Any]) -> None:
    account = inst.get("account") or {}
    await upsert(
        ctx.session,
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


async def _add_repositories(ctx: HandlerContext, installation_id: int, repos: list[dict[str, Any]]) -> None:
    for repo in repos:
        await upsert(
            ctx.session,
            InstallationRepository.__table__,
            {
                "repository_id": repo["id"],
                "installation_id": installation_id,
                "full_name": repo["full_name"],
                "full_name_key": repo["full_name"].lower(),
                "added_at": utcnow(),
            },
            conflict=["repository_id"],
            update=["installation_id", "full_name", "full_name_key"],
        )


async def _set_suspended(ctx: HandlerContext, installation_id: int, suspended: bool) -> None:
    now = utcnow()
    await upsert(
        ctx.session,
        InstallationStatus.__table__,
        {"installation_id": installation_id, "suspended_at": now if suspended else None, "updated_at": now},
        conflict=["installation_id"],
        update=["suspended_at", "updated_at"],
    )


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action="unsuspend")
async def installation_active(event: sansio.Event, ctx: HandlerContext) -> None:
    inst = _installation(event)
    await _save_installation(ctx, inst)
    await _add_repositories(ctx, inst["id"], event.data.get("repositories") or [])
    await _set_suspended(ctx, inst["id"], False)


@router.register("installation", action="suspend")
async def installation_suspended(event: sansio.Event, ctx: HandlerContext) -> None:
    inst = _installation(event)
    await _save_installation(ctx, inst)
    await _set_suspended(ctx, inst["id"], True)


@router.register("installation", action="deleted")
async def installation_deleted(event: sansio.Event, ctx: HandlerContext) -> None:
    installation_id = _installation(event)["id"]
    await ctx.session.execute(
        delete(InstallationRepository).where(InstallationRepository.installation_id == installation_id)
    )
    await ctx.session.execute(delete(InstallationStatus).where(InstallationStatus.installation_id == installation_id))
    await ctx.session.execute(delete(GitHubInstallation).where(GitHubInstallation.installation_id == installation_id))
    # Nothing can be written to an uninstalled repository; pending check runs and comments go too.
    await ctx.session.execute(delete(OutboxItem).where(OutboxItem.installation_id == installation_id))


@router.register("installation_repositories", action="added")
async def repositories_added(event: sansio.Event, ctx: HandlerContext) -> None:
    inst = _installation(event)
    await _save_installation(ctx, inst)
    await _add_repositories(ctx, inst["id"], event.data.get("repositories_added") or [])


@router.register("installation_repositories", action="removed")
async def repositories_removed(event: sansio.Event, ctx: HandlerContext) -> None:
    installation_id = _installation(event)["id"]
    ids = [r["id"] for r in event.data.get("repositories_removed") or [] if isinstance(r.get("id"), int)]
    if ids:
        await ctx.session.execute(
            delete(InstallationRepository).where(
                InstallationRepository.installation_id == installation_id,
                InstallationRepository.repository_id.in_(ids),
            )
        )
