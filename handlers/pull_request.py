"""pull_request: link the PR to its story and move the story (opened, ready, draft, closed, merged)."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services.pull_requests import handle_pull_request

router = routing.Router()


@router.register("pull_request")
async def pull_request(event: sansio.Event, ctx: HandlerContext) -> None:
    await handle_pull_request(ctx, event)
