"""push: story files on the default branch, QA gate files on any branch."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services.pushes import handle_push

router = routing.Router()


@router.register("push")
async def push(event: sansio.Event, ctx: HandlerContext) -> None:
    await handle_push(ctx, event)
