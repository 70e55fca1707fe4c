"""Time as this database stores it (naive UTC), without SQLAlchemy: the webhook endpoint stamps each
delivery in a process that never loads it."""

from __future__ import annotations

from datetime import UTC, datetime


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
