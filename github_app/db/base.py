"""The one declarative Base for the seed's models and the app's own tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from github_app.db.types import Timestamp3, new_id, utcnow


class Base(DeclarativeBase):
    pass


def id_column() -> Mapped[str]:
    return mapped_column("id", primary_key=True, default=new_id)


def created_at_column() -> Mapped[datetime]:
    return mapped_column("createdAt", Timestamp3, default=utcnow, server_default=text("CURRENT_TIMESTAMP"))


def updated_at_column() -> Mapped[datetime]:
    # Prisma's @updatedAt has no database default: the client sets it on every write, and so do we.
    return mapped_column("updatedAt", Timestamp3, default=utcnow, onupdate=utcnow)
