"""The GitHub account (numeric id) each marketplace user is bound to the first time they act, so a
renamed or reclaimed login cannot speak for them.

Revision ID: 0005_github_accounts
Revises: 0004_app_schema
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_github_accounts"
down_revision: str | None = "0004_app_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_account",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("bound_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="github_account_pkey"),
        sa.UniqueConstraint("user_id", name="github_account_user_id_key"),
        sa.ForeignKeyConstraint(["user_id"], ["User.id"], name="github_account_user_id_fkey", ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("github_account")
