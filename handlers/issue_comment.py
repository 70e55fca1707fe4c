"""issue_comment: bot commands in issue and pull request comments."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services.commands import handle_issue_comment

router = routing.Router()


@router.register("issue_comment", action="created")
@router.register("issue_comment", action="edited")
async def issue_comment(event: sansio.Event, ctx: HandlerContext) -> None:
    await handle_issue_comment(ctx, event)
