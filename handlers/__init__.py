"""Webhook handlers, one module per event family, each registering on its own router.

The worker dispatches every inbox row to `router`. Handlers are thin: parse the event, call a
service, and let the unit of work and the outbox carry the effects.
"""

from gidgethub import routing

from handlers import installation, issue_comment, pull_request, pull_request_review, push

router = routing.Router(
    installation.router, issue_comment.router, pull_request.router, pull_request_review.router, push.router
)

__all__ = ["router"]
