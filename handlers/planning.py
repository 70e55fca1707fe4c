"""pull_request and pull_request_review for the planning stages: a PR delivering a stage's documents,
and the client's review of it."""

from __future__ import annotations

from gidgethub import routing, sansio

from github_app.handling import HandlerContext
from github_app.services.stage_prs import handle_stage_pull_request, handle_stage_review

router = routing.Router()


@router.register("pull_request")
async def stage_pull_request(event: sansio.Event, ctx: HandlerContext) -> None:
    await handle_stage_pull_request(ctx, event)


@router.register("pull_request_review")
async def stage_review(event: sansio.Event, ctx: HandlerContext) -> None:
    await handle_stage_review(ctx, event)
