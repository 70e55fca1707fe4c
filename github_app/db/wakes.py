"""Which of the process's background loops a unit of work needs once it has committed.

A delivery's transaction may leave GitHub writes in the outbox or make a release request due. The loop
that acts on them is woken after the commit, and only then: waking the outbox sender and the releaser
after every delivery made each of them run an empty claim per delivery, each claim costing more CPU to
build than to run. What no unit of work announces (another process's work, a retry falling due) is
still found by each loop's idle poll.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

OUTBOX = "outbox"
RELEASES = "releases"

_KEY = "wake_after_commit"


def ask(session: AsyncSession, loop: str) -> None:
    session.info.setdefault(_KEY, set()).add(loop)


def asked(session: AsyncSession) -> frozenset[str]:
    return frozenset(session.info.get(_KEY, ()))
