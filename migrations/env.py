"""Alembic environment (async). The URL is the app's DATABASE_URL unless the caller set one.

On PostgreSQL, before any migration: the seed's tables in `public` are verified (refused, with nothing
written, when the app cannot work with them), the app's schema is made, and `alembic_version` lives
there. Every connection's search_path is `<app schema>, public` (db/engine.py), so the migrations'
unqualified `CREATE TABLE`s land in the app's schema and their references to seed tables find `public`.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from github_app.db import migrate
from github_app.db.app_schema import configured_app_schema
from github_app.db.engine import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_target() -> tuple[str, str]:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url, config.attributes.get("app_schema") or configured_app_schema()
    from github_app.config import load_settings

    settings = load_settings()
    return settings.database_url, settings.database_app_schema


def run_migrations(connection: Connection, app_schema: str) -> None:
    options: dict[str, object] = {}
    if connection.dialect.name == "postgresql":
        # A downgrade touches only the app's own schema: it must work whatever the marketplace did.
        if config.attributes.get("verify_seed", True):
            report = migrate.check_seed(connection)
            if report.problems:
                raise migrate.SeedSchemaRefused(report)
        migrate.prepare_app_schema(connection, app_schema)
        options["version_table_schema"] = app_schema
    # No target_metadata: every migration is written by hand against the Prisma-generated DDL.
    context.configure(connection=connection, target_metadata=None, render_as_batch=True, **options)
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    url, app_schema = database_target()
    engine = make_engine(url, app_schema)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations, app_schema)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")

asyncio.run(run_async())
