"""The seed schema: the marketplace's 13 tables and 8 enums, exactly as Prisma creates them.

On PostgreSQL this runs the DDL that Prisma's schema engine generates for schema.prisma, unchanged, so
the database is the one the marketplace's Prisma services expect (tests compare the catalogs), in
`public`. Where the marketplace's Prisma Migrate has made them already, it creates nothing: env.py has
verified them (attach mode), and they stay the marketplace's: a downgrade never drops them. On SQLite it
runs a hand translation with the same names.

Revision ID: 0001_seed_schema
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from migrations import schemas
from migrations.sqlfile import run_sql_file

revision: str = "0001_seed_schema"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Children before parents; Bid before Opportunity (Opportunity.acceptedBidId is SET NULL on delete).
TABLES_DROP_ORDER = (
    "StoryAuditLog",
    "Deliverable",
    "Rating",
    "Document",
    "Escrow",
    "ApiKey",
    "Story",
    "Bid",
    "Opportunity",
    "Project",
    "MCPSession",
    "GitHubInstallation",
    "User",
)
ENUMS = (
    "Role",
    "ProjectStatus",
    "Stage",
    "OpportunityStatus",
    "BidStatus",
    "StoryStatus",
    "DeliverableStatus",
    "EscrowStatus",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        if schemas.seed_objects_present():
            return
        with schemas.seed_search_path():
            run_sql_file("0001_seed.postgresql.sql")
        schemas.mark_seed_created()
    elif dialect == "sqlite":
        run_sql_file("0001_seed.sqlite.sql")
    else:
        raise RuntimeError(f"unsupported database {dialect!r}: use PostgreSQL or SQLite")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres and not schemas.seed_created_by_app():
        return
    prefix = "public." if postgres else ""
    for table in TABLES_DROP_ORDER:
        op.execute(f'DROP TABLE {prefix}"{table}"' + (" CASCADE" if postgres else ""))
    if postgres:
        for enum in ENUMS:
            op.execute(f'DROP TYPE {prefix}"{enum}"')
        op.execute(f'COMMENT ON SCHEMA "{schemas.app_schema()}" IS NULL')
