"""The pace of the app's writes to GitHub, shared by every process: one row per installation.

Revision ID: 0007_github_pace
Revises: 0006_workflow_hardening
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_github_pace"
down_revision: str | None = "0006_workflow_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_pace",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("next_write_at", sa.Double(), nullable=False, server_default=sa.text("0")),
        sa.Column("not_before", sa.Double(), nullable=False, server_default=sa.text("0")),
        sa.Column("recent_creates", sa.Text(), nullable=False, server_default=sa.text("'[]'")),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="github_pace_pkey"),
    )


def downgrade() -> None:
    op.drop_table("github_pace")
