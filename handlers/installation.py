"""installation and installation_repositories: keep GitHubInstallation and the repository map current."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services import installations

router = routing.Router()


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action="unsuspend")
async def installation_active(event: sansio.Event, ctx: HandlerContext) -> None:
    await installations.installation_active(ctx, event)


@router.register("installation", action="suspend")
async def installation_suspended(event: sansio.Event, ctx: HandlerContext) -> None:
    await installations.installation_suspended(ctx, event)


@router.register("installation", action="deleted")
async def installation_deleted(event: sansio.Event, ctx: HandlerContext) -> None:
    await installations.installation_deleted(ctx, event)


@router.register("installation_repositories", action="added")
async def repositories_added(event: sansio.Event, ctx: HandlerContext) -> None:
    await installations.repositories_added(ctx, event)


@router.register("installation_repositories", action="removed")
async def repositories_removed(event: sansio.Event, ctx: HandlerContext) -> None:
    await installations.repositories_removed(ctx, event)
