"""Workflow hardening: who introduced each story and gate file version (content_origin), the base and
reviewed head a story's completion is judged by, and reverts.

Revision ID: 0006_workflow_hardening
Revises: 0005_github_accounts
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_workflow_hardening"
down_revision: str | None = "0005_github_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "content_origin",
        sa.Column("repository_key", sa.Text(), nullable=False),
        sa.Column("blob_sha", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("introducer_login", sa.Text(), nullable=False),
        sa.Column("introducer_id", sa.BigInteger(), nullable=True),
        sa.Column("commit_sha", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository_key", "blob_sha", name="content_origin_pkey"),
    )
    with op.batch_alter_table("pull_request_link") as batch:
        batch.add_column(sa.Column("base_ref", sa.Text(), nullable=True))
        batch.add_column(sa.Column("head_updated_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reverts_pr", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reverted_by_pr", sa.Integer(), nullable=True))
    op.create_index("pull_request_link_head_idx", "pull_request_link", ["repository_key", "head_sha"])
    with op.batch_alter_table("story_state") as batch:
        batch.add_column(sa.Column("reviewed_head", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reviewed_base", sa.Text(), nullable=True))
        batch.add_column(sa.Column("merged_head", sa.Text(), nullable=True))
        batch.add_column(sa.Column("gate_expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("story_state") as batch:
        batch.drop_column("gate_expires_at")
        batch.drop_column("merged_head")
        batch.drop_column("reviewed_base")
        batch.drop_column("reviewed_head")
    op.drop_index("pull_request_link_head_idx", table_name="pull_request_link")
    with op.batch_alter_table("pull_request_link") as batch:
        batch.drop_column("reverted_by_pr")
        batch.drop_column("reverts_pr")
        batch.drop_column("head_updated_at")
        batch.drop_column("base_ref")
    op.drop_table("content_origin")
