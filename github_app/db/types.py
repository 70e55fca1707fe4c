"""Column types that give Prisma's physical types on PostgreSQL and sensible ones on SQLite."""

from __future__ import annotations

import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from github_app.db.clock import from_github_time as from_github_time
from github_app.db.clock import utcnow as utcnow

# Prisma's DateTime is TIMESTAMP(3) WITHOUT TIME ZONE holding UTC.
Timestamp3 = sa.DateTime().with_variant(postgresql.TIMESTAMP(precision=3), "postgresql")
# Prisma's Json is JSONB.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def new_id() -> str:
    """Prisma's `@default(uuid())` is generated client-side; so is ours."""
    return str(uuid.uuid4())


def pg_enum(enum_cls: type[enum.Enum], name: str) -> sa.Enum:
    """A PostgreSQL enum type named as Prisma names it, storing the members' values."""
    return sa.Enum(
        enum_cls,
        name=name,
        values_callable=lambda cls: [m.value for m in cls],
        native_enum=True,
        create_constraint=False,
        validate_strings=True,
    )
