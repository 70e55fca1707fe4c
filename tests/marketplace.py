"""A database as the marketplace's Prisma Migrate leaves it: Prisma's DDL for the seed, the
`_prisma_migrations` history, and changes the marketplace made later (a column, a table, an enum label)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from tests.conftest import pg_execute

REFERENCE_SQL = Path(__file__).resolve().parent.parent / "migrations" / "sql" / "0001_seed.postgresql.sql"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "schema" / "prisma_reference.sql"

# Exactly what Prisma Migrate creates for its history.
PRISMA_MIGRATIONS_DDL = """
CREATE TABLE "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)"""

# The marketplace kept going after the seed: nothing the app relies on changes.
LATER_MARKETPLACE_CHANGES = (
    'ALTER TABLE "Project" ADD COLUMN "archivedAt" TIMESTAMP(3)',
    'ALTER TABLE "Story" ADD COLUMN "estimatePoints" INTEGER NOT NULL DEFAULT 0',
    """CREATE TABLE "Invoice" (
        "id" TEXT NOT NULL,
        "projectId" TEXT NOT NULL,
        "amount" DECIMAL(65,30) NOT NULL,
        "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "Invoice_pkey" PRIMARY KEY ("id")
    )""",
    'CREATE INDEX "Invoice_projectId_idx" ON "Invoice"("projectId")',
    """ALTER TABLE "Invoice" ADD CONSTRAINT "Invoice_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES "Project"("id") ON DELETE RESTRICT ON UPDATE CASCADE""",
    "ALTER TYPE \"ProjectStatus\" ADD VALUE 'ON_HOLD'",
)


def reference_sql() -> str:
    return (SHARED_REFERENCE if SHARED_REFERENCE.exists() else REFERENCE_SQL).read_text()


def _history_row(name: str, sql: str) -> str:
    checksum = hashlib.sha256(sql.encode()).hexdigest()
    migration_id = hashlib.md5(name.encode()).hexdigest()  # noqa: S324 - an id, not a secret
    return (
        'INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, '
        f"applied_steps_count) VALUES ('{migration_id[:8]}-{migration_id[8:12]}-{migration_id[12:16]}-"
        f"{migration_id[16:20]}-{migration_id[20:32]}', '{checksum}', now(), '{name}', now(), 1)"
    )


def build_marketplace_database(url: str, *, later_changes: bool = True, seed_sql: str | None = None) -> None:
    """Prisma's DDL for the seed (or `seed_sql`), its migration history, and the marketplace's later changes."""
    sql = seed_sql if seed_sql is not None else reference_sql()
    statements = [sql, PRISMA_MIGRATIONS_DDL, _history_row("20261101000000_init", sql)]
    if later_changes:
        statements += list(LATER_MARKETPLACE_CHANGES)
        statements.append(_history_row("20261115000000_invoices", ";\n".join(LATER_MARKETPLACE_CHANGES)))
    asyncio.run(pg_execute(url, *statements))
