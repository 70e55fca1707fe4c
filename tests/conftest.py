"""Shared fixtures. The database is real: SQLite by default, PostgreSQL when TEST_DATABASE_URL names
one (CI runs both). A PostgreSQL that cannot be reached fails the run; it never skips."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from github_app.config import Settings
from github_app.db import migrate
from github_app.db.app_schema import configured_app_schema
from github_app.db.engine import is_sqlite
from github_app.db.models import SEED_TABLES
from github_app.runtime import Runtime

pytest_plugins = ["tests.github_fixtures", "tests.harness", "tests.chain.hardhat"]

WEBHOOK_SECRET = "test-webhook-secret-1"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
# On PostgreSQL: build the session's database as the marketplace's Prisma Migrate leaves it (seed tables,
# `_prisma_migrations`, later additions) and attach the app to it, instead of letting the app create all.
TEST_ATTACHED_SEED = bool(TEST_DATABASE_URL) and os.environ.get("TEST_ATTACHED_SEED", "") not in ("", "0")


def pytest_report_header(config: pytest.Config) -> str:
    attached = " (attached to a marketplace-made seed)" if TEST_ATTACHED_SEED else ""
    return f"database: {TEST_DATABASE_URL or 'sqlite (temporary files)'}{attached}"


def postgres_admin_url(url: str, database: str = "postgres") -> str:
    return make_url(url).set(drivername="postgresql+asyncpg", database=database).render_as_string(hide_password=False)


async def pg_execute(url: str, *statements: str) -> None:
    import asyncpg

    from github_app.db.engine import asyncpg_dsn

    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    except Exception as exc:  # noqa: BLE001 - turned into a clear failure
        pytest.fail(f"TEST_DATABASE_URL names PostgreSQL but it cannot be reached: {exc!r}", pytrace=False)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_pg_database(url: str, name: str) -> str:
    admin = postgres_admin_url(url)
    asyncio.run(pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str, name: str) -> None:
    asyncio.run(pg_execute(postgres_admin_url(url), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database at head, made once per run."""
    if TEST_DATABASE_URL:
        url = create_pg_database(TEST_DATABASE_URL, f"bmad_test_{os.getpid()}")
        if TEST_ATTACHED_SEED:
            from tests.marketplace import build_marketplace_database

            build_marketplace_database(url)
        migrate.upgrade(url)
        yield url
        drop_pg_database(TEST_DATABASE_URL, f"bmad_test_{os.getpid()}")
    else:
        path = tmp_path_factory.mktemp("db") / "template.sqlite3"
        url = f"sqlite+aiosqlite:///{path}"
        migrate.upgrade(url)
        yield url


def _truncate_all(url: str) -> None:
    tables = list(SEED_TABLES)
    app_tables = asyncio.run(_app_tables(url))
    names = ", ".join(f'"{t}"' for t in tables + app_tables)
    asyncio.run(pg_execute(url, f"TRUNCATE {names} CASCADE"))


async def _app_tables(url: str) -> list[str]:
    import asyncpg

    from github_app.db.engine import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> 'alembic_version'",
            configured_app_schema(),
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


@pytest.fixture
def db_url(migrated_template: str, tmp_path: Path) -> str:
    """A database at head with no rows, for one test."""
    if is_sqlite(migrated_template):
        path = tmp_path / "test.sqlite3"
        shutil.copy(make_url(migrated_template).database or "", path)
        return f"sqlite+aiosqlite:///{path}"
    _truncate_all(migrated_template)
    return migrated_template


def make_settings(db_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": db_url,
        "webhook_secrets": (WEBHOOK_SECRET,),
        "worker_retry_base_seconds": 0.0,
        "worker_poll_seconds": 0.05,
        "worker_lease_seconds": 30.0,
        "github_app_slug": "bmad-marketplace-app",  # the fake GitHub's bot is bmad-marketplace-app[bot]
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await Runtime.create(settings)
    yield rt
    await rt.close()


@pytest.fixture
def is_postgres(db_url: str) -> bool:
    return not is_sqlite(db_url)


async def fetch_all(runtime: Runtime, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with runtime.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


@pytest.fixture
async def app_runtime(settings: Settings, fake_github: Any, github_app_keys: Any) -> AsyncIterator[Runtime]:
    """A runtime whose GitHub is the fake one, with the real client and short retry waits."""
    from github_app.github.client import GitHubApp
    from tests.github_fixtures import FAST_RETRY, GITHUB_APP_ID

    rt = await Runtime.create(
        dataclasses.replace(
            settings,
            github_app_id=GITHUB_APP_ID,
            github_private_key=github_app_keys.private_pem,
            github_api_url=fake_github.url,
        )
    )
    rt.github = GitHubApp(GITHUB_APP_ID, github_app_keys.private_pem, fake_github.url, rt.http, retry_policy=FAST_RETRY)
    yield rt
    await rt.close()
