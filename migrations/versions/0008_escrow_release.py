"""Escrow release: the release request becomes a leased work item, and the app's own chain records
(wallets, signed transactions, per-signer nonces, funding problems).

Revision ID: 0008_escrow_release
Revises: 0007_github_pace
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_escrow_release"
down_revision: str | None = "0007_github_pace"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELEASE_STATES = "state IN ('pending', 'releasing', 'released', 'failed', 'cancelled')"


def upgrade() -> None:
    # Batch mode: SQLite cannot add a CHECK constraint to an existing table in place.
    with op.batch_alter_table("escrow_release_request") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("waiting_for", sa.Text(), nullable=True))
        batch.add_column(sa.Column("released_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("tx_url", sa.Text(), nullable=True))
        batch.create_check_constraint("escrow_release_request_state_check", RELEASE_STATES)
        # One escrow pays one story.
        batch.create_unique_constraint("escrow_release_request_escrow_id_key", ["escrow_id"])
    op.execute("UPDATE escrow_release_request SET next_attempt_at = created_at WHERE next_attempt_at IS NULL")
    op.create_index("escrow_release_request_due_idx", "escrow_release_request", ["state", "next_attempt_at"])

    op.create_table(
        "wallet",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("chain", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "chain", name="wallet_pkey"),
        sa.CheckConstraint("chain IN ('polygon', 'solana')", name="wallet_chain_check"),
        sa.ForeignKeyConstraint(["user_id"], ["User.id"], name="wallet_user_id_fkey", ondelete="CASCADE"),
    )

    op.create_table(
        "escrow_chain_tx",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("escrow_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("chain", sa.Text(), nullable=False),
        sa.Column("tx_hash", sa.Text(), nullable=False),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=False),
        sa.Column("signer", sa.Text(), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("recent_blockhash", sa.Text(), nullable=True),
        sa.Column("last_valid_block_height", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="escrow_chain_tx_pkey"),
        sa.UniqueConstraint("tx_hash", name="escrow_chain_tx_hash_key"),
        sa.CheckConstraint("kind IN ('release', 'refund')", name="escrow_chain_tx_kind_check"),
        sa.CheckConstraint(
            "state IN ('signed', 'confirmed', 'reverted', 'dropped')", name="escrow_chain_tx_state_check"
        ),
        sa.ForeignKeyConstraint(
            ["escrow_id"], ["Escrow.id"], name="escrow_chain_tx_escrow_id_fkey", ondelete="RESTRICT"
        ),
    )
    op.create_index("escrow_chain_tx_escrow_idx", "escrow_chain_tx", ["escrow_id", "kind"])

    op.create_table(
        "evm_signer_nonce",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("signer", sa.Text(), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "signer", name="evm_signer_nonce_pkey"),
    )

    op.create_table(
        "escrow_chain_state",
        sa.Column("escrow_id", sa.Text(), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("refund_requested_at", sa.DateTime(), nullable=True),
        sa.Column("refund_tx_hash", sa.Text(), nullable=True),
        sa.Column("refunded_at", sa.DateTime(), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("escrow_id", name="escrow_chain_state_pkey"),
        sa.ForeignKeyConstraint(
            ["escrow_id"], ["Escrow.id"], name="escrow_chain_state_escrow_id_fkey", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("escrow_chain_state")
    op.drop_table("evm_signer_nonce")
    op.drop_index("escrow_chain_tx_escrow_idx", table_name="escrow_chain_tx")
    op.drop_table("escrow_chain_tx")
    op.drop_table("wallet")
    op.drop_index("escrow_release_request_due_idx", table_name="escrow_release_request")
    with op.batch_alter_table("escrow_release_request") as batch:
        batch.drop_constraint("escrow_release_request_escrow_id_key", type_="unique")
        batch.drop_constraint("escrow_release_request_state_check", type_="check")
        added = ("tx_url", "released_at", "waiting_for", "lease_expires_at", "lease_owner", "next_attempt_at")
        added += ("attempts",)
        for column in added:
            batch.drop_column(column)
