"""The composed router calls the event families' routers in the order they are listed: the planning
handlers read the pull-request link the story's handlers record in the same delivery."""

from __future__ import annotations

from gidgethub import routing, sansio

import handlers
from handlers import RoutersInOrder


async def test_routers_are_dispatched_in_the_order_they_are_listed() -> None:
    calls: list[int] = []
    routers = []
    for n in range(12):  # a set of twelve callbacks almost never iterates in insertion order
        r = routing.Router()

        async def record(event: sansio.Event, n: int = n) -> None:
            calls.append(n)

        r.add(record, "pull_request")
        routers.append(r)
    await RoutersInOrder(*routers).dispatch(sansio.Event({}, event="pull_request", delivery_id="1"))
    assert calls == list(range(12))


def test_the_story_handlers_come_before_the_planning_ones() -> None:
    order = list(handlers.router._in_order)
    assert order.index(handlers.pull_request.router) < order.index(handlers.planning.router)
    assert order.index(handlers.pull_request_review.router) < order.index(handlers.planning.router)
