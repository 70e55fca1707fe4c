"""INSERT ... ON CONFLICT for both dialects (their insert constructs share this API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import FromClause


def _insert(session: AsyncSession, table: Table | FromClause) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    make: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return make(table)


async def upsert(
    session: AsyncSession,
    table: Table | FromClause,
    values: dict[str, Any],
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """Insert, or update `update` columns of the row that conflicts on `conflict`."""
    stmt = _insert(session, table).values(**values)
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    await session.execute(stmt)


async def insert_if_absent(
    session: AsyncSession, table: Table | FromClause, values: dict[str, Any], conflict: Sequence[str]
) -> bool:
    """Insert unless a row conflicts on `conflict`; True when this call inserted it. Safe under
    concurrency: the loser of a race gets False instead of an error."""
    stmt = (
        _insert(session, table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(literal_column("1"))
    )
    return (await session.execute(stmt)).first() is not None
