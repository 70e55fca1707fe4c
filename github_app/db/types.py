"""Column types that give Prisma's physical types on PostgreSQL and sensible ones on SQLite."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Prisma's DateTime is TIMESTAMP(3) WITHOUT TIME ZONE holding UTC.
Timestamp3 = sa.DateTime().with_variant(postgresql.TIMESTAMP(precision=3), "postgresql")
# Prisma's Json is JSONB.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def new_id() -> str:
    """Prisma's `@default(uuid())` is generated client-side; so is ours."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Naive UTC with millisecond precision, as Prisma stores it in TIMESTAMP(3)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


def from_github_time(value: object) -> datetime | None:
    """A timestamp from a GitHub payload (`2026-11-27T02:35:25Z`, or a commit's local
    `2026-11-27T03:35:25+01:00`) as naive UTC, the way this database stores time; None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


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
