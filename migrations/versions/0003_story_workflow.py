"""The story workflow's own tables: PR links, gate reviews, the GitHub outbox, the story-opportunity
link shared with the marketplace, and the escrow release requests written with DONE.

Revision ID: 0003_story_workflow
Revises: 0002_webhook_inbox
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_story_workflow"
down_revision: str | None = "0002_webhook_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _fk(column: str, target: str, name: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=name, ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "story_opportunity",
        sa.Column("story_id", sa.Text(), nullable=False),
        sa.Column("opportunity_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("story_id", name="story_opportunity_pkey"),
        sa.UniqueConstraint("opportunity_id", name="story_opportunity_opportunity_id_key"),
        _fk("story_id", "Story", "story_opportunity_story_id_fkey"),
        _fk("opportunity_id", "Opportunity", "story_opportunity_opportunity_id_fkey"),
    )

    op.create_table(
        "pull_request_link",
        sa.Column("repository_key", sa.Text(), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("repository", sa.Text(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("story_id", sa.Text(), nullable=True),
        sa.Column("link_source", sa.Text(), nullable=True),
        sa.Column("link_problem", sa.Text(), nullable=True),
        sa.Column("html_url", sa.Text(), nullable=False),
        sa.Column("author_login", sa.Text(), nullable=False),
        sa.Column("head_sha", sa.Text(), nullable=False),
        sa.Column("head_ref", sa.Text(), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("merged", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("merged_at", sa.DateTime(), nullable=True),
        sa.Column("pr_updated_at", sa.DateTime(), nullable=True),
        sa.Column("refusal", sa.Text(), nullable=True),
        sa.Column("gate_problem", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository_key", "pr_number", name="pull_request_link_pkey"),
        _fk("story_id", "Story", "pull_request_link_story_id_fkey", ondelete="SET NULL"),
    )
    op.create_index("pull_request_link_story_idx", "pull_request_link", ["story_id"])

    op.create_table(
        "story_state",
        sa.Column("story_id", sa.Text(), nullable=False),
        sa.Column("pr_merged", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("gate", sa.Text(), nullable=True),
        sa.Column("gate_accepted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("gate_note", sa.Text(), nullable=True),
        sa.Column("gate_problem", sa.Text(), nullable=True),
        sa.Column("gate_committed_at", sa.DateTime(), nullable=True),
        sa.Column("blocked_from", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("story_id", name="story_state_pkey"),
        _fk("story_id", "Story", "story_state_story_id_fkey"),
    )

    op.create_table(
        "gate_review",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("story_id", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("blob_sha", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewer_login", sa.Text(), nullable=False),
        sa.Column("committed_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="gate_review_pkey"),
        sa.UniqueConstraint("story_id", "path", "blob_sha", name="gate_review_story_path_blob_key"),
        _fk("story_id", "Story", "gate_review_story_id_fkey"),
    )

    op.create_table(
        "escrow_release_request",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("story_id", sa.Text(), nullable=False),
        sa.Column("deliverable_id", sa.Text(), nullable=True),
        sa.Column("expert_id", sa.Text(), nullable=False),
        sa.Column("opportunity_id", sa.Text(), nullable=True),
        sa.Column("escrow_id", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="escrow_release_request_pkey"),
        # One release per story, ever: the database itself refuses a second one.
        sa.UniqueConstraint("story_id", name="escrow_release_request_story_id_key"),
        _fk("story_id", "Story", "escrow_release_request_story_id_fkey", ondelete="RESTRICT"),
    )

    op.create_table(
        "github_outbox",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("repository", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("sent_version", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("remote_id", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="github_outbox_pkey"),
        sa.UniqueConstraint("repository", "kind", "target", name="github_outbox_target_key"),
    )
    op.create_index("github_outbox_due_idx", "github_outbox", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("github_outbox_due_idx", table_name="github_outbox")
    op.drop_table("github_outbox")
    op.drop_table("escrow_release_request")
    op.drop_table("gate_review")
    op.drop_table("story_state")
    op.drop_index("pull_request_link_story_idx", table_name="pull_request_link")
    op.drop_table("pull_request_link")
    op.drop_table("story_opportunity")
