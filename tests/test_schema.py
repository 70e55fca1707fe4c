"""The data model: migrations create exactly Prisma's schema, the models match it, downgrade empties it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from github_app.db import (
    app_tables,  # noqa: F401 - registers the app's tables on Base
    catalog,
    migrate,
)
from github_app.db.app_schema import SEED_SCHEMA
from github_app.db.base import Base
from github_app.db.catalog import Catalog
from github_app.db.engine import make_engine
from github_app.db.models import SEED_ENUMS, SEED_TABLES
from tests.conftest import TEST_DATABASE_URL, create_pg_database, drop_pg_database, pg_execute
from tests.corpus import missing
from tests.marketplace import REFERENCE_SQL, SHARED_REFERENCE, reference_sql

needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="PostgreSQL catalogs are compared in the PostgreSQL pass"
)


async def read_catalog(url: str, schema: str = SEED_SCHEMA) -> Catalog:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: catalog.read_catalog(sync, schema))
    finally:
        await engine.dispose()


def test_shipped_reference_sql_is_prismas_output() -> None:
    """The migration runs a copy of Prisma's generated DDL; the copy must not drift from it."""
    if not SHARED_REFERENCE.exists():
        missing(f"the reference DDL is not beside this checkout ({SHARED_REFERENCE} is missing)")
    assert REFERENCE_SQL.read_text() == SHARED_REFERENCE.read_text()


@needs_postgres
def test_migrations_create_exactly_the_prisma_schema_on_postgresql() -> None:
    pid = os.getpid()
    reference_db, migrated_db = f"bmad_ref_{pid}", f"bmad_mig_{pid}"
    reference_url = create_pg_database(TEST_DATABASE_URL, reference_db)
    migrated_url = create_pg_database(TEST_DATABASE_URL, migrated_db)
    try:
        asyncio.run(pg_execute(reference_url, reference_sql()))
        migrate.upgrade(migrated_url)
        # The whole of `public`: the app's own tables are in its schema, never beside Prisma's.
        reference = asyncio.run(read_catalog(reference_url))
        migrated = asyncio.run(read_catalog(migrated_url))
        assert len(reference["columns"]) > 100 and len(reference["enums"]) == 38
        # What verification expects of the seed is recorded from Prisma's DDL, not from the app's models.
        recorded = catalog.Expectation.from_catalog(reference, SEED_TABLES, SEED_ENUMS)
        assert recorded == catalog.expected()
        for kind in catalog.CATALOG_QUERIES:
            missing = sorted(set(reference[kind]) - set(migrated[kind]), key=str)
            extra = sorted(set(migrated[kind]) - set(reference[kind]), key=str)
            assert not missing and not extra, f"{kind} differ:\n missing {missing}\n extra {extra}"
            assert reference[kind] == migrated[kind]
    finally:
        drop_pg_database(TEST_DATABASE_URL, reference_db)
        drop_pg_database(TEST_DATABASE_URL, migrated_db)


async def test_models_match_the_migrated_schema(db_url: str) -> None:
    """What the ORM writes is what the database (and Prisma) holds: no missing column, index or FK."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": False}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    # Scratch tables that other tests create are not the app's schema.
    diffs = [d for d in diffs if not (d[0] == "remove_table" and d[1].name.startswith("test_"))]
    assert diffs == []


async def test_seed_tables_carry_prisma_names(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:

            def names(sync: object) -> tuple[set[str], set[str], set[str]]:
                insp = inspect(sync)
                tables = set(insp.get_table_names())
                indexes = {i["name"] for i in insp.get_indexes("Story")}
                fks = {f["name"] for f in insp.get_foreign_keys("Project")}
                return tables, indexes, fks

            tables, story_indexes, project_fks = await conn.run_sync(names)
    finally:
        await engine.dispose()
    assert set(SEED_TABLES) <= tables
    assert "Story_projectId_epicNumber_storyNumber_key" in story_indexes
    assert project_fks == {"Project_clientId_fkey"}


def test_downgrade_to_base_leaves_an_empty_database(tmp_path: Path) -> None:
    if TEST_DATABASE_URL:
        name = f"bmad_down_{os.getpid()}"
        url = create_pg_database(TEST_DATABASE_URL, name)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'down.sqlite3'}"
    try:
        migrate.upgrade(url)
        migrate.downgrade(url, "base")

        async def leftovers() -> tuple[list[str], list[str]]:
            engine = make_engine(url)
            try:
                async with engine.connect() as conn:
                    tables = await conn.run_sync(lambda s: inspect(s).get_table_names())
                    enums: list[str] = []
                    if TEST_DATABASE_URL:
                        enums = await conn.run_sync(
                            lambda s: [e["name"] for e in inspect(s).get_enums()]  # type: ignore[attr-defined]
                        )
                    return tables, enums
            finally:
                await engine.dispose()

        tables, enums = asyncio.run(leftovers())
        # Alembic's own bookkeeping table stays, empty; nothing of the app's or the seed's does.
        assert tables == ["alembic_version"]
        assert enums == []
        migrate.upgrade(url)  # and it can come back
    finally:
        if TEST_DATABASE_URL:
            drop_pg_database(TEST_DATABASE_URL, name)


def test_the_head_revision_read_without_alembic_is_alembics() -> None:
    """Readiness compares the database with the code's head read straight from the migration scripts
    (the HTTP process does not load Alembic): it must be the head Alembic migrates to."""
    from github_app.db import migrate

    assert migrate.head_revision() == migrate.alembic_head_revision()
