"""The app's own tables move out of `public` into the app's schema (default `bmad_app`), where the
marketplace's Prisma Migrate never sees them.

A database made by this revision's code has them there from the start (env.py makes the schema and
puts it first on the search_path, so 0002 and 0003 create them in it); installations made before have
them in `public` and are moved here: `ALTER TABLE ... SET SCHEMA` moves each table with its rows,
indexes, constraints and sequences, copying nothing. The schema itself, and `alembic_version` in it, are
made by env.py before any revision runs (Alembic records every revision there).
The downgrade moves them back; it never touches a seed object.

Revision ID: 0004_app_schema
Revises: 0003_story_workflow
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from github_app.db.app_schema import SEED_SCHEMA
from migrations import schemas

revision: str = "0004_app_schema"
down_revision: str | None = "0003_story_workflow"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The app's tables of 0002 and 0003. Tables of later revisions are created in the app's schema.
APP_TABLES = (
    "webhook_inbox",
    "installation_repository",
    "installation_status",
    "story_opportunity",
    "pull_request_link",
    "story_state",
    "gate_review",
    "escrow_release_request",
    "github_outbox",
)


def _move(source: str, target: str) -> None:
    bind = op.get_bind()
    for table in APP_TABLES:
        there = bind.execute(text("SELECT to_regclass(:name)"), {"name": f'"{source}"."{table}"'}).scalar()
        if there is not None:
            op.execute(f'ALTER TABLE "{source}"."{table}" SET SCHEMA "{target}"')


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one file, no schemas
    _move(SEED_SCHEMA, schemas.app_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _move(schemas.app_schema(), SEED_SCHEMA)
