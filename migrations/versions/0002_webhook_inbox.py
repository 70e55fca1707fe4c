"""The app's ingress tables: the durable webhook inbox and the installation-to-repository map.

Revision ID: 0002_webhook_inbox
Revises: 0001_seed_schema
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_webhook_inbox"
down_revision: str | None = "0001_seed_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("delivery_id", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("repository", sa.Text(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("delivery_id", name="webhook_inbox_pkey"),
        sa.CheckConstraint("state IN ('pending', 'processing', 'done', 'dead')", name="webhook_inbox_state_check"),
    )
    op.create_index("webhook_inbox_state_next_attempt_idx", "webhook_inbox", ["state", "next_attempt_at"])
    if op.get_bind().dialect.name == "postgresql":
        # Payloads are ~25 KB of JSON. PostgreSQL's default pglz compression of them costs more CPU than
        # the rest of the ingress together; lz4 is five times cheaper and compresses better. Where the
        # server lacks lz4, store them uncompressed rather than pay pglz on the hot path.
        lz4 = (
            op.get_bind()
            .exec_driver_sql(
                "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
            )
            .first()
        )
        if lz4:
            op.execute("ALTER TABLE webhook_inbox ALTER COLUMN payload SET COMPRESSION lz4")
        else:
            op.execute("ALTER TABLE webhook_inbox ALTER COLUMN payload SET STORAGE EXTERNAL")

    op.create_table(
        "installation_repository",
        sa.Column("repository_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("full_name", sa.Text(), nullable=False),
        sa.Column("full_name_key", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository_id", name="installation_repository_pkey"),
    )
    op.create_index("installation_repository_full_name_key", "installation_repository", ["full_name_key"], unique=True)
    op.create_index("installation_repository_installation_idx", "installation_repository", ["installation_id"])

    op.create_table(
        "installation_status",
        sa.Column("installation_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("suspended_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("installation_id", name="installation_status_pkey"),
    )


def downgrade() -> None:
    op.drop_table("installation_status")
    op.drop_index("installation_repository_installation_idx", table_name="installation_repository")
    op.drop_index("installation_repository_full_name_key", table_name="installation_repository")
    op.drop_table("installation_repository")
    op.drop_index("webhook_inbox_state_next_attempt_idx", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
