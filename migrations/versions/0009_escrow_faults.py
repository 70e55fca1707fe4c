"""Escrow faults: the funder and the acceptance block of a Polygon escrow (its on-chain id is keyed by the
funder; event searches start at that block), replacement transactions (same nonce, higher fee), and the
arbiter's rescue transactions, which belong to no escrow.

Revision ID: 0009_escrow_faults
Revises: 0008_escrow_release
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_escrow_faults"
down_revision: str | None = "0008_escrow_release"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "kind IN ('release', 'refund', 'rescue')"
OLD_KINDS = "kind IN ('release', 'refund')"


def upgrade() -> None:
    with op.batch_alter_table("escrow_chain_state") as batch:
        batch.add_column(sa.Column("funder", sa.Text(), nullable=True))
        batch.add_column(sa.Column("watch_from_block", sa.BigInteger(), nullable=True))
    # Batch mode: SQLite cannot change a CHECK constraint or a column's nullability in place.
    with op.batch_alter_table("escrow_chain_tx") as batch:
        batch.add_column(sa.Column("replaces", sa.Text(), nullable=True))
        batch.alter_column("escrow_id", existing_type=sa.Text(), nullable=True)
        batch.drop_constraint("escrow_chain_tx_kind_check", type_="check")
        batch.create_check_constraint("escrow_chain_tx_kind_check", KINDS)
    op.create_index("escrow_chain_tx_signer_nonce_idx", "escrow_chain_tx", ["signer", "nonce"])


def downgrade() -> None:
    op.drop_index("escrow_chain_tx_signer_nonce_idx", table_name="escrow_chain_tx")
    op.execute("DELETE FROM escrow_chain_tx WHERE kind = 'rescue'")
    with op.batch_alter_table("escrow_chain_tx") as batch:
        batch.drop_constraint("escrow_chain_tx_kind_check", type_="check")
        batch.create_check_constraint("escrow_chain_tx_kind_check", OLD_KINDS)
        batch.alter_column("escrow_id", existing_type=sa.Text(), nullable=False)
        batch.drop_column("replaces")
    with op.batch_alter_table("escrow_chain_state") as batch:
        batch.drop_column("watch_from_block")
        batch.drop_column("funder")
