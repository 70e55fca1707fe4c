"""Alembic, driven from code: `bmad-app db upgrade|downgrade|current|check` and the readiness check.

On PostgreSQL the app shares the database with the marketplace's Prisma Migrate (see README, "Sharing
the database with the marketplace"): before any migration runs, the seed's tables in `public` are
verified; a database whose seed the app cannot work with is refused before anything is written.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from github_app.db.app_schema import SEED_SCHEMA, check_schema_name, configured_app_schema
from github_app.db.catalog import SeedReport, numbered, verify_seed, verify_seed_asyncpg
from github_app.db.paths import ensure_sqlite_directory

if TYPE_CHECKING:
    # SQLAlchemy loads where migrations run or an engine exists; an HTTP-only process checks readiness over
    # plain asyncpg (schema_problem_asyncpg) and never loads it.
    import asyncpg
    from alembic.config import Config
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"
VERSION_TABLE = "alembic_version"


class SeedSchemaRefused(RuntimeError):
    """The seed's tables are there but not as the app needs them (or only some are there)."""

    def __init__(self, report: SeedReport) -> None:
        self.report = report
        super().__init__(
            "the marketplace's tables in `public` are not what this app needs; nothing was changed:\n  "
            + "\n  ".join(report.problems)
        )


def alembic_config(database_url: str, app_schema: str | None = None) -> Config:
    # Alembic (and its templates) load only to migrate: the HTTP process's readiness check needs none.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    cfg.attributes["app_schema"] = check_schema_name(app_schema or configured_app_schema())
    return cfg


_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=\n]*=\s*(.+)$", re.MULTILINE)


@cache
def head_revision() -> str:
    """The code's head: fixed for the life of the process. Read from the scripts' `revision` and
    `down_revision` lines, without loading Alembic; anything but one head is left to Alembic to judge."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(
            (name, ast.literal_eval(value.strip())) for name, value in _REVISION_LINE.findall(script.read_text())
        )
        if isinstance(found.get("revision"), str):
            revisions.add(found["revision"])
            down = found.get("down_revision")
            parents.update([down] if isinstance(down, str) else list(down or ()))
    heads = revisions - parents
    if len(heads) == 1:
        return heads.pop()
    return alembic_head_revision()


def alembic_head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def upgrade(database_url: str, revision: str = "head", app_schema: str | None = None) -> None:
    """Raises SeedSchemaRefused, with nothing written, when the seed's tables cannot be attached to."""
    from alembic import command

    ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url, app_schema), revision)


def downgrade(database_url: str, revision: str = "base", app_schema: str | None = None) -> None:
    from alembic import command

    cfg = alembic_config(database_url, app_schema)
    cfg.attributes["verify_seed"] = False
    command.downgrade(cfg, revision)


def check_seed(conn: Connection) -> SeedReport:
    """Verify the seed's tables, logging what the marketplace added at INFO. Reads only."""
    report = verify_seed(conn)
    for addition in report.additions:
        log.info("seed schema: %s", addition)
    return report


def prepare_app_schema(conn: Connection, app_schema: str) -> None:
    """Give the app its schema, and bring `alembic_version` into it from where installations made before
    the app had a schema keep it (`public`), so Alembic sees how far they are."""
    from sqlalchemy import text

    exists = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": app_schema}).first()
    if not exists:
        # Checked first: a database user without CREATE on the database may own a schema made for it.
        conn.exec_driver_sql(f'CREATE SCHEMA "{app_schema}"')
    if _has_table(conn, SEED_SCHEMA, VERSION_TABLE) and not _has_table(conn, app_schema, VERSION_TABLE):
        conn.exec_driver_sql(f'ALTER TABLE {SEED_SCHEMA}."{VERSION_TABLE}" SET SCHEMA "{app_schema}"')


_HAS_TABLE = "SELECT to_regclass(:name)"


def _qualified(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def _version_schemas(app_schema: str) -> tuple[str, str]:
    """Where `alembic_version` is looked for on PostgreSQL, in order: `public` holds it in an installation
    made before the app had a schema of its own."""
    return app_schema, SEED_SCHEMA


def _has_table(conn: Connection, schema: str, table: str) -> bool:
    from sqlalchemy import text

    return conn.execute(text(_HAS_TABLE), {"name": _qualified(schema, table)}).scalar() is not None


def _current_revision_sync(conn: Connection, app_schema: str) -> str | None:
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        if not conn.dialect.has_table(conn, VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    for schema in _version_schemas(app_schema):
        if _has_table(conn, schema, VERSION_TABLE):
            return conn.execute(text(f"SELECT version_num FROM {_qualified(schema, VERSION_TABLE)}")).scalar()
    return None


async def _current_revision_asyncpg(conn: asyncpg.Connection, app_schema: str) -> str | None:
    for schema in _version_schemas(app_schema):
        if await conn.fetchval(numbered(_HAS_TABLE, "name"), _qualified(schema, VERSION_TABLE)) is not None:
            revision: str | None = await conn.fetchval(f"SELECT version_num FROM {_qualified(schema, VERSION_TABLE)}")
            return revision
    return None


async def current_revision(engine: AsyncEngine, app_schema: str | None = None) -> str | None:
    schema = check_schema_name(app_schema or configured_app_schema())
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: _current_revision_sync(sync, schema))


async def seed_report(engine: AsyncEngine) -> SeedReport | None:
    """None on SQLite, where the app owns the whole file."""
    if engine.dialect.name == "sqlite":
        return None
    async with engine.connect() as conn:
        return await conn.run_sync(verify_seed)


async def schema_problem(engine: AsyncEngine, app_schema: str | None = None) -> str | None:
    """None when the database is reachable, its seed tables are what the app needs, and it is at head;
    else why not, for /readyz and the CLI."""

    async def read() -> tuple[str | None, SeedReport | None]:
        return await current_revision(engine, app_schema), await seed_report(engine)

    return await _judge(read)


async def schema_problem_asyncpg(
    connection: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]], app_schema: str | None = None
) -> str | None:
    """schema_problem on PostgreSQL over a plain asyncpg connection (`connection()` lends one): the same
    reads and the same answer, in a process that loads no SQLAlchemy."""
    schema = check_schema_name(app_schema or configured_app_schema())

    async def read() -> tuple[str | None, SeedReport | None]:
        async with connection() as conn:
            return await _current_revision_asyncpg(conn, schema), await verify_seed_asyncpg(conn)

    return await _judge(read)


async def _judge(read: Callable[[], Awaitable[tuple[str | None, SeedReport | None]]]) -> str | None:
    """`read` gives the database's revision and its seed report (None where the app owns the whole database)."""
    try:
        current, report = await read()
    except Exception as exc:
        return f"database unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    if report is not None and report.problems:
        shown = "; ".join(report.problems[:5])
        more = f" (and {len(report.problems) - 5} more)" if len(report.problems) > 5 else ""
        return f"the marketplace's tables are not what the app needs: {shown}{more}: see `bmad-app db check`"
    head = head_revision()
    if current is None:
        return "database not migrated: run `bmad-app db upgrade`"
    if current != head:
        return f"database at revision {current}, code expects {head}: run `bmad-app db upgrade`"
    return None
