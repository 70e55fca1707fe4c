"""API keys with admin rights: the seed's ApiKey has no column for them, so the app records which of
its keys are admin keys in its own schema.

Revision ID: 0014_api_keys
Revises: 0011_bot_commands
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_api_keys"
down_revision: str | None = "0011_bot_commands"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No foreign key to "ApiKey": the app needs no REFERENCES grant on it, `apikey revoke` deletes both
    # rows in one transaction, and a key deleted by the marketplace leaves a row naming an id (a random
    # uuid) that no key will have again.
    op.create_table(
        "api_key_admin",
        sa.Column("api_key_id", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", name="api_key_admin_pkey"),
    )


def downgrade() -> None:
    op.drop_table("api_key_admin")
