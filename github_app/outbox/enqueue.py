"""Recording what GitHub should show, inside the transaction of the change that caused it.

A handler states the desired content of a target (the check run of a head commit, the comment of a
pull request); the row keeps only the latest wish and a version. Nothing here talks to GitHub: if the
handler's transaction rolls back, so does the wish, and the sender never shows a state that was not
committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db import wakes
from github_app.db.app_tables import OutboxItem
from github_app.db.types import utcnow

KIND_CHECK_RUN = "check_run"  # target: the head commit's SHA
KIND_PR_COMMENT = "pr_comment"  # target: the pull request's number, as text
KIND_COMMAND_REPLY = "command_reply"  # target: "{issue number}/{command comment id}"
KIND_REACTION = "reaction"  # target: the command comment's id, as text
KINDS = (KIND_CHECK_RUN, KIND_PR_COMMENT, KIND_COMMAND_REPLY, KIND_REACTION)

T = OutboxItem


def canonical_json(payload: dict[str, Any]) -> str:
    """One spelling per payload (sorted keys, no spaces), so equal payloads compare equal as text."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()


async def set_desired(
    session: AsyncSession,
    *,
    installation_id: int,
    repository: str,
    kind: str,
    target: str,
    payload: dict[str, Any],
) -> bool:
    """Make `payload` the desired content of (repository, kind, target). True when that changed what
    is desired (the sender will bring GitHub to it); False when it was already the desired content."""
    changed = await set_all_desired(
        session, installation_id=installation_id, repository=repository, wishes=[(kind, target, payload)]
    )
    return changed > 0


async def set_all_desired(
    session: AsyncSession,
    *,
    installation_id: int,
    repository: str,
    wishes: Sequence[tuple[str, str, dict[str, Any]]],
) -> int:
    """Each (kind, target, payload) of `wishes` becomes the desired content of (repository, kind,
    target); how many of them changed what is desired.

    One statement, INSERT ... ON CONFLICT DO UPDATE ... WHERE: two transactions creating the same
    target at once do not fail (the second waits for the first and then updates its row), and an
    identical payload touches nothing, not even the version, so repeated events cost no API call.
    Rows are written in the order given, the order every unit of work keeps (see lock_order).
    """
    for kind, _, _ in wishes:
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
    if not wishes:
        return 0
    now = utcnow()
    rows = [
        {
            "installation_id": installation_id,
            "repository": repository,
            "kind": kind,
            "target": target,
            "payload": canonical_json(payload),
            "version": 1,
            "sent_version": 0,
            "attempts": 0,
            "next_attempt_at": now,
            "updated_at": now,
        }
        for kind, target, payload in wishes
    ]
    # Several rows go as one multi-row INSERT (SQLAlchemy's "insertmanyvalues"), from one cached
    # statement: a statement built with a list of VALUES could not be cached and was compiled each time.
    stmt = _UPSERT[session.get_bind().dialect.name]
    changed = len((await session.execute(stmt, rows)).all())
    if changed:
        wakes.ask(session, wakes.OUTBOX)
    return changed


def _upsert(insert: Any) -> Any:
    table = T.__table__
    values = insert(table)
    excluded = values.excluded
    return values.on_conflict_do_update(
        index_elements=[table.c.repository, table.c.kind, table.c.target],
        set_={
            "payload": excluded.payload,
            # An app reinstalled on the repository has a new installation: send with the current one.
            "installation_id": excluded.installation_id,
            "version": table.c.version + 1,
            "next_attempt_at": excluded.next_attempt_at,
            "updated_at": excluded.updated_at,
        },
        where=or_(table.c.payload != excluded.payload, table.c.installation_id != excluded.installation_id),
    ).returning(table.c.id)


_UPSERT = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


async def withdraw_desired(
    session: AsyncSession,
    *,
    installation_id: int,
    repository: str,
    kind: str,
    target: str,
    shown_instead: dict[str, Any],
) -> None:
    """(repository, kind, target) is no longer wanted. A wish never sent (nor being sent) is dropped,
    so GitHub never shows it; one GitHub already shows cannot be taken back (a check run stays once
    created), so `shown_instead` becomes its desired content."""
    row = (
        (await session.execute(select(T).where(T.repository == repository, T.kind == kind, T.target == target)))
        .scalars()
        .first()
    )
    if row is None:
        return
    if row.sent_version == 0 and row.lease_owner is None and row.remote_id is None:
        never_sent = (T.id == row.id, T.sent_version == 0, T.lease_owner.is_(None), T.remote_id.is_(None))
        if (await session.execute(delete(T).where(*never_sent).returning(T.id))).first() is not None:
            return
    await set_desired(
        session,
        installation_id=installation_id,
        repository=repository,
        kind=kind,
        target=target,
        payload=shown_instead,
    )
