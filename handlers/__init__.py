"""Webhook handlers, one module per event family, each registering on its own router.

The worker dispatches every inbox row to `router`. Handlers are thin: parse the event, call a
service, and let the unit of work and the outbox carry the effects.
"""

from gidgethub import routing

from handlers import installation, issue_comment, planning, pull_request, pull_request_review, push

# The story's handlers before the planning ones: they record the PR's link, which the planning handlers read.
router = routing.Router(
    installation.router,
    issue_comment.router,
    pull_request.router,
    pull_request_review.router,
    push.router,
    planning.router,
)

__all__ = ["router"]
