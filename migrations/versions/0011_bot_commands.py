"""Bot commands: the comments that held them, each account's recent runs (the flood limit), and the
refunds clients asked for.

Revision ID: 0011_bot_commands
Revises: 0009_escrow_faults
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_bot_commands"
down_revision: str | None = "0009_escrow_faults"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "command_comment",
        sa.Column("repository_key", sa.Text(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=False),
        sa.Column("issue_number", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("commands", sa.Text(), nullable=False),
        sa.Column("comment_url", sa.Text(), nullable=True),
        sa.Column("comment_updated_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository_key", "comment_id", name="command_comment_pkey"),
    )
    op.create_index("command_comment_repository_idx", "command_comment", ["repository_key", "outcome"])
    op.create_table(
        "command_use",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("flooded", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="command_use_pkey"),
    )
    op.create_index("command_use_account_idx", "command_use", ["account_id", "at"])
    op.create_table(
        "refund_request",
        sa.Column("escrow_id", sa.Text(), nullable=False),
        sa.Column("story_id", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("repository", sa.Text(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=False),
        sa.Column("issue_number", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("tx_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("escrow_id", name="refund_request_pkey"),
        sa.CheckConstraint("state IN ('pending', 'refunded', 'failed')", name="refund_request_state_check"),
    )
    op.create_index("refund_request_due_idx", "refund_request", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("refund_request_due_idx", table_name="refund_request")
    op.drop_table("refund_request")
    op.drop_index("command_use_account_idx", table_name="command_use")
    op.drop_table("command_use")
    op.drop_index("command_comment_repository_idx", table_name="command_comment")
    op.drop_table("command_comment")
