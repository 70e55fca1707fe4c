"""Which schema a migration is writing to, on PostgreSQL.

Migrations create the app's tables unqualified: the connection's search_path (`<app schema>, public`)
puts them in the app's schema. Only the seed's DDL (0001) and the move of old installations (0004) need
the names themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op
from sqlalchemy import text

from github_app.db.app_schema import SEED_SCHEMA


def app_schema() -> str:
    """The app's schema (env.py keeps `alembic_version` there); PostgreSQL only."""
    schema = op.get_context().version_table_schema
    assert schema, "the app's schema is set by migrations/env.py on PostgreSQL"
    return str(schema)


@contextmanager
def seed_search_path() -> Iterator[None]:
    """Prisma's DDL is unqualified: run it with only `public` on the search_path, so it lands there."""
    bind = op.get_bind()
    previous = bind.exec_driver_sql("SELECT current_setting('search_path')").scalar()
    bind.exec_driver_sql(f"SET search_path TO {SEED_SCHEMA}")
    try:
        yield
    finally:
        bind.execute(text("SELECT set_config('search_path', :path, false)"), {"path": previous})


def seed_objects_present() -> bool:
    """Any seed table there already (the marketplace's, made by Prisma Migrate)? env.py has verified
    that then all of them are, as the app needs them."""
    found = op.get_bind().exec_driver_sql(f"SELECT to_regclass('{SEED_SCHEMA}.\"Story\"')").scalar()
    return found is not None


# Set on the app's schema when the app itself created the seed's tables (a database of its own): only
# then may a downgrade to base drop them. Tables Prisma Migrate made are never the app's to drop.
SEED_CREATED_MARK = "bmad-app: created the seed tables in public"


def mark_seed_created() -> None:
    op.execute(f"COMMENT ON SCHEMA \"{app_schema()}\" IS '{SEED_CREATED_MARK}'")


def seed_created_by_app() -> bool:
    comment = (
        op.get_bind()
        .execute(
            text("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = :s"),
            {"s": app_schema()},
        )
        .scalar()
    )
    return comment == SEED_CREATED_MARK
