"""Planning stages: the pull requests delivering them, their audit trail, and stage escrow releases
(a release request with no story, one per stage Opportunity).

Revision ID: 0015_planning_stages
Revises: 0014_api_keys
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_planning_stages"
down_revision: str | None = "0014_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGE_ONLY = "story_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("escrow_release_request") as batch:
        batch.alter_column("story_id", existing_type=sa.Text(), nullable=True)
        batch.create_check_constraint(
            "escrow_release_request_subject_check", "story_id IS NOT NULL OR opportunity_id IS NOT NULL"
        )
    op.create_index(
        "escrow_release_request_stage_key",
        "escrow_release_request",
        ["opportunity_id"],
        unique=True,
        sqlite_where=sa.text(STAGE_ONLY),
        postgresql_where=sa.text(STAGE_ONLY),
    )
    op.create_table(
        "stage_pull_request",
        sa.Column("repository_key", sa.Text(), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("opportunity_id", sa.Text(), nullable=True),
        sa.Column("deliverable_id", sa.Text(), nullable=True),
        sa.Column("refusal", sa.Text(), nullable=True),
        sa.Column("review_problem", sa.Text(), nullable=True),
        sa.Column("approved_head", sa.Text(), nullable=True),
        sa.Column("merged_head", sa.Text(), nullable=True),
        sa.Column("merge_sha", sa.Text(), nullable=True),
        sa.Column("documents", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository_key", "pr_number", name="stage_pull_request_pkey"),
        sa.UniqueConstraint("deliverable_id", name="stage_pull_request_deliverable_id_key"),
        sa.ForeignKeyConstraint(
            ["deliverable_id"], ["Deliverable.id"], name="stage_pull_request_deliverable_id_fkey", ondelete="SET NULL"
        ),
    )
    op.create_index("stage_pull_request_opportunity_idx", "stage_pull_request", ["opportunity_id"])
    op.create_table(
        "stage_audit_log",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("opportunity_id", sa.Text(), nullable=True),
        sa.Column("deliverable_id", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="stage_audit_log_pkey"),
    )
    op.create_index("stage_audit_log_project_idx", "stage_audit_log", ["project_id", "created_at"])


def downgrade() -> None:
    op.drop_index("stage_audit_log_project_idx", table_name="stage_audit_log")
    op.drop_table("stage_audit_log")
    op.drop_index("stage_pull_request_opportunity_idx", table_name="stage_pull_request")
    op.drop_table("stage_pull_request")
    op.drop_index("escrow_release_request_stage_key", table_name="escrow_release_request")
    # Stage releases have no story and cannot survive the column becoming required again.
    op.execute("DELETE FROM escrow_release_request WHERE story_id IS NULL")
    with op.batch_alter_table("escrow_release_request") as batch:
        batch.drop_constraint("escrow_release_request_subject_check", type_="check")
        batch.alter_column("story_id", existing_type=sa.Text(), nullable=False)
