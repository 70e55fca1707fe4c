"""Alembic, driven from code: `bmad-app db upgrade|downgrade|current` and the readiness check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from github_app.db.paths import ensure_sqlite_directory

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        has_table = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "alembic_version"))
        if not has_table:
            return None
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def schema_problem(engine: AsyncEngine) -> str | None:
    """None when the database is reachable and at head; else why not, for /readyz and the CLI."""
    try:
        current = await current_revision(engine)
    except Exception as exc:
        return f"database unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    head = head_revision()
    if current is None:
        return "database not migrated: run `bmad-app db upgrade`"
    if current != head:
        return f"database at revision {current}, code expects {head}: run `bmad-app db upgrade`"
    return None
