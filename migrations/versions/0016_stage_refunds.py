"""Stage refunds: a client's `/bmad refund <stage>` asks for the refund of a planning stage's escrow, so a
refund request names a story or, with no story, the stage's Opportunity.

Revision ID: 0016_stage_refunds
Revises: 0015_planning_stages
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_stage_refunds"
down_revision: str | None = "0015_planning_stages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refund_request") as batch:
        batch.add_column(sa.Column("opportunity_id", sa.Text(), nullable=True))
        batch.alter_column("story_id", existing_type=sa.Text(), nullable=True)
        batch.create_check_constraint(
            "refund_request_subject_check", "story_id IS NOT NULL OR opportunity_id IS NOT NULL"
        )


def downgrade() -> None:
    # Stage refunds have no story and cannot survive the column becoming required again.
    op.execute("DELETE FROM refund_request WHERE story_id IS NULL")
    with op.batch_alter_table("refund_request") as batch:
        batch.drop_constraint("refund_request_subject_check", type_="check")
        batch.alter_column("story_id", existing_type=sa.Text(), nullable=False)
        batch.drop_column("opportunity_id")
