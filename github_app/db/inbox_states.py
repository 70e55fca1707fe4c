"""The inbox's states and how deep the inbox is in each, without SQLAlchemy: /metrics samples the depth
in HTTP-only processes too, over plain asyncpg."""

from __future__ import annotations

from collections.abc import Iterable


class InboxState:
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    DEAD = "dead"
    ALL = (PENDING, PROCESSING, DONE, DEAD)


# Written out once for both drivers: SQLAlchemy's connection and a plain asyncpg one run the same text.
DEPTH_SQL = "SELECT state, count(*) FROM webhook_inbox GROUP BY state"


def depth_counts(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Every state, a state with no rows at 0."""
    counts = {state: 0 for state in InboxState.ALL}
    counts.update({state: int(n) for state, n in rows})
    return counts
