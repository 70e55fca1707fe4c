"""Where the app's own tables live on PostgreSQL.

The seed's tables belong to the marketplace's Prisma Migrate, in `public`. Every table of the app's own
(and Alembic's `alembic_version`) lives in a schema of its own, so Prisma never sees them: no drift
report, no offer to reset, nothing pulled by `prisma db pull`.

Nothing names that schema in SQL. Every PostgreSQL connection the app opens has
`search_path = <app schema>, public`: unqualified `CREATE TABLE` (migrations) and unqualified table names
(models, raw SQL) resolve to the app's schema first and to the seed's tables in `public` second. SQLite
has one file and no schemas; none of this applies there.
"""

from __future__ import annotations

import os
import re

APP_SCHEMA_VARIABLE = "DATABASE_APP_SCHEMA"
DEFAULT_APP_SCHEMA = "bmad_app"
SEED_SCHEMA = "public"

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(name: str) -> str:
    """A plain lower-case identifier, so it is never quoted and never collides with the seed's."""
    if not _NAME.fullmatch(name) or name == SEED_SCHEMA or name.startswith("pg_") or name == "information_schema":
        raise ValueError(
            f"{name!r} cannot be the app's schema: use lower-case letters, digits and '_' "
            f"(at most 63, not starting with a digit or 'pg_'), and not {SEED_SCHEMA!r}"
        )
    return name


def configured_app_schema() -> str:
    """The process's app schema when the caller has no Settings at hand (Alembic, tools, tests)."""
    return check_schema_name(os.environ.get(APP_SCHEMA_VARIABLE, "").strip() or DEFAULT_APP_SCHEMA)


def search_path(app_schema: str | None = None) -> str:
    return f"{check_schema_name(app_schema or configured_app_schema())}, {SEED_SCHEMA}"
