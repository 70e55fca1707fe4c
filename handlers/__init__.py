"""Webhook handlers, one module per event family, each registering on its own router.

The worker dispatches every inbox row to `router`. Handlers are thin: parse the event, call a
service, and let the unit of work and the outbox carry the effects.
"""

from typing import Any

from gidgethub import routing, sansio

from handlers import installation, issue_comment, planning, pull_request, pull_request_review, push, repository


class RoutersInOrder(routing.Router):
    """Dispatches to each router in the order given. gidgethub's own Router calls its callbacks over a
    set, in no stable order, and the planning handlers read the PR link the story's handlers record."""

    def __init__(self, *routers: routing.Router) -> None:
        super().__init__(*routers)
        self._in_order = routers

    async def dispatch(self, event: sansio.Event, *args: Any, **kwargs: Any) -> None:
        for each in self._in_order:
            await each.dispatch(event, *args, **kwargs)


router = RoutersInOrder(
    installation.router,
    repository.router,
    issue_comment.router,
    pull_request.router,
    pull_request_review.router,
    push.router,
    planning.router,
)

__all__ = ["router"]
