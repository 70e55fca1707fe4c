"""pull_request_review: the QA's review on a story's pull request is QA's gate."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services.reviews import handle_pull_request_review

router = routing.Router()


@router.register("pull_request_review")
async def pull_request_review(event: sansio.Event, ctx: HandlerContext) -> None:
    await handle_pull_request_review(ctx, event)
