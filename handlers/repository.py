"""repository: a repository renamed or transferred keeps its project (see services.installations)."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services import installations

router = routing.Router()


@router.register("repository", action="renamed")
@router.register("repository", action="transferred")
async def repository_renamed(event: sansio.Event, ctx: HandlerContext) -> None:
    await installations.repository_renamed(ctx, event)
