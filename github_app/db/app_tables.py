"""The app's own tables, beside the seed's. Prisma ignores them (they are not in schema.prisma), so
they use snake_case names to stand apart from the marketplace's models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, LargeBinary, PrimaryKeyConstraint, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from github_app.db.base import Base


class InboxState:
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    DEAD = "dead"
    ALL = (PENDING, PROCESSING, DONE, DEAD)


class WebhookDelivery(Base):
    """One verified GitHub delivery, committed before it is acknowledged.

    `payload` is the JSON body exactly as GitHub sent it (bytes), never re-serialised: the hot path
    pays for no encoding and the row is the evidence of what arrived.
    """

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        PrimaryKeyConstraint("delivery_id", name="webhook_inbox_pkey"),
        CheckConstraint("state IN ('pending', 'processing', 'done', 'dead')", name="webhook_inbox_state_check"),
        Index("webhook_inbox_state_next_attempt_idx", "state", "next_attempt_at"),
    )

    delivery_id: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(Text)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repository: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column()
    state: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column()


class InstallationRepository(Base):
    """Which installation serves which repository; kept current by installation events."""

    __tablename__ = "installation_repository"
    __table_args__ = (
        PrimaryKeyConstraint("repository_id", name="installation_repository_pkey"),
        Index("installation_repository_full_name_key", "full_name_key", unique=True),
        Index("installation_repository_installation_idx", "installation_id"),
    )

    repository_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    full_name: Mapped[str] = mapped_column(Text)
    # GitHub names are case-insensitive; the lowered copy is what lookups and uniqueness use.
    full_name_key: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column()


class InstallationStatus(Base):
    """What the seed's GitHubInstallation has no column for: suspension."""

    __tablename__ = "installation_status"
    __table_args__ = (PrimaryKeyConstraint("installation_id", name="installation_status_pkey"),)

    installation_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    suspended_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
