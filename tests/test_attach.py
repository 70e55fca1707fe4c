"""Attach mode: the app joins a database whose seed tables the marketplace's Prisma Migrate made and
keeps changing. It verifies them, never alters them, and keeps its own tables in a schema of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from github_app.db import (
    app_tables,  # noqa: F401 - registers the app's tables on Base.metadata
    migrate,
)
from github_app.db.app_schema import DEFAULT_APP_SCHEMA
from github_app.db.base import Base
from github_app.db.catalog import Catalog, read_catalog
from github_app.db.engine import make_engine
from github_app.db.models import SEED_TABLES
from tests.conftest import TEST_DATABASE_URL, create_pg_database, drop_pg_database, pg_execute
from tests.marketplace import build_marketplace_database, reference_sql
from tests.test_cli import ROOT, bmad_app, clean_env, free_port, get

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="attach mode is PostgreSQL's")

# The app's tables as of 0003, the last revision that kept them in `public`.
LEGACY_APP_TABLES = {
    "webhook_inbox",
    "installation_repository",
    "installation_status",
    "story_opportunity",
    "pull_request_link",
    "story_state",
    "gate_review",
    "escrow_release_request",
    "github_outbox",
}
# Every table the app's models declare beside the seed's.
APP_TABLES = {name for name in Base.metadata.tables if name not in SEED_TABLES}


@pytest.fixture
def fresh_url() -> Iterator[str]:
    name = f"bmad_attach_{os.getpid()}"
    yield create_pg_database(TEST_DATABASE_URL, name)
    drop_pg_database(TEST_DATABASE_URL, name)


async def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    return asyncio.run(_query(url, sql))


def public_catalog(url: str) -> Catalog:
    async def read() -> Catalog:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read_catalog)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def schemas(url: str) -> set[str]:
    rows = query(url, "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'")
    return {str(r[0]) for r in rows}


def tables_in(url: str, schema: str) -> set[str]:
    return {str(r[0]) for r in query(url, f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")}


def prisma_history(url: str) -> list[tuple[object, ...]]:
    return query(url, 'SELECT * FROM public."_prisma_migrations" ORDER BY migration_name')


def test_attaches_to_the_marketplace_database_and_changes_nothing_of_it(fresh_url: str, tmp_path: Path) -> None:
    build_marketplace_database(fresh_url)
    before, history = public_catalog(fresh_url), prisma_history(fresh_url)
    env = clean_env(tmp_path, DATABASE_URL=fresh_url, LOG_LEVEL="INFO")

    first = bmad_app("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    # The marketplace's additions are accepted and reported.
    assert "Project.archivedAt: column added by the marketplace" in first.stderr
    assert "Invoice: table added by the marketplace" in first.stderr
    assert "enum \"ProjectStatus\": label 'ON_HOLD' added by the marketplace" in first.stderr

    assert public_catalog(fresh_url) == before
    assert prisma_history(fresh_url) == history
    assert tables_in(fresh_url, DEFAULT_APP_SCHEMA) == APP_TABLES | {"alembic_version"}
    assert query(fresh_url, f"SELECT version_num FROM {DEFAULT_APP_SCHEMA}.alembic_version") == [
        (migrate.head_revision(),)
    ]

    app_before = public_catalog_of(fresh_url, DEFAULT_APP_SCHEMA)
    second = bmad_app("db", "upgrade", env=env)
    assert second.returncode == 0, second.stderr
    assert public_catalog(fresh_url) == before and prisma_history(fresh_url) == history
    assert public_catalog_of(fresh_url, DEFAULT_APP_SCHEMA) == app_before

    check = bmad_app("db", "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all there, as the app needs them" in check.stdout
    assert "fine:    Invoice: table added by the marketplace" in check.stdout
    assert f"database {migrate.head_revision()}, code {migrate.head_revision()}" in check.stdout

    assert readyz(env, tmp_path) == (200, {"status": "ready"})
    # A downgrade to base removes the app's objects only: the marketplace's are Prisma's to manage.
    down = bmad_app("db", "downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert public_catalog(fresh_url) == before and prisma_history(fresh_url) == history
    assert tables_in(fresh_url, DEFAULT_APP_SCHEMA) == {"alembic_version"}


def public_catalog_of(url: str, schema: str) -> Catalog:
    async def read() -> Catalog:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: read_catalog(sync, schema))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def readyz(env: dict[str, str], tmp_path: Path) -> tuple[int, dict[str, str]]:
    """What a real `serve` answers on /readyz for that database."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "github_app", "serve", "--no-worker"],
        env={**env, "PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.1)
        answer = get(f"http://127.0.0.1:{port}/readyz")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        return answer
    finally:
        proc.kill()


def _without(sql: str, line: str) -> str:
    assert line in sql, line
    return sql.replace(line, "", 1)


REFUSALS = {
    "a column the app needs": (
        lambda sql: _without(sql, '    "qaGateStatus" TEXT,\n'),
        "Story.qaGateStatus: column missing (the app needs text nullable)",
    ),
    "an enum label the app writes": (
        lambda sql: _without(sql, ", 'BLOCKED'"),
        "enum \"StoryStatus\": label 'BLOCKED' missing (used by Story.status, StoryAuditLog.fromStatus, "
        "StoryAuditLog.toStatus)",
    ),
    "a changed type": (
        lambda sql: sql.replace('"epicNumber" INTEGER NOT NULL', '"epicNumber" TEXT NOT NULL', 1),
        "Story.epicNumber: type is text, the app needs integer",
    ),
    "a unique index the app's upserts rely on": (
        lambda sql: _without(
            sql,
            'CREATE UNIQUE INDEX "Story_projectId_epicNumber_storyNumber_key" ON '
            '"Story"("projectId", "epicNumber", "storyNumber");\n',
        ),
        'Story ("projectId", "epicNumber", "storyNumber"): unique index missing',
    ),
}


@pytest.mark.parametrize("change", sorted(REFUSALS))
def test_a_seed_the_app_cannot_work_with_is_refused_before_anything_is_written(
    change: str, fresh_url: str, tmp_path: Path
) -> None:
    edit, problem = REFUSALS[change]
    build_marketplace_database(fresh_url, seed_sql=edit(reference_sql()))
    before, history = public_catalog(fresh_url), prisma_history(fresh_url)
    env = clean_env(tmp_path, DATABASE_URL=fresh_url)

    result = bmad_app("db", "upgrade", env=env)
    assert result.returncode == 1
    assert f"\n  {problem}" in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr
    assert public_catalog(fresh_url) == before and prisma_history(fresh_url) == history
    assert DEFAULT_APP_SCHEMA not in schemas(fresh_url)

    check = bmad_app("db", "check", env=env)
    assert check.returncode == 1
    assert f"  problem: {problem}" in check.stdout
    assert DEFAULT_APP_SCHEMA not in schemas(fresh_url)


def test_readiness_says_why_while_the_seed_does_not_verify(fresh_url: str, tmp_path: Path) -> None:
    build_marketplace_database(fresh_url)
    env = clean_env(tmp_path, DATABASE_URL=fresh_url)
    assert bmad_app("db", "upgrade", env=env).returncode == 0
    # The marketplace then drops a column the app writes.
    asyncio.run(pg_execute(fresh_url, 'ALTER TABLE public."Story" DROP COLUMN "qaGateStatus"'))
    status, body = readyz(env, tmp_path)
    assert status == 503
    assert "Story.qaGateStatus: column missing" in body["reason"]


def test_partly_there_seed_tables_and_a_new_required_column_are_refused(fresh_url: str, tmp_path: Path) -> None:
    build_marketplace_database(fresh_url, later_changes=False)
    asyncio.run(
        pg_execute(
            fresh_url,
            'DROP TABLE "Rating"',
            'ALTER TABLE "StoryAuditLog" ADD COLUMN "tenantId" TEXT NOT NULL',
        )
    )
    before = public_catalog(fresh_url)
    result = bmad_app("db", "upgrade", env=clean_env(tmp_path, DATABASE_URL=fresh_url))
    assert result.returncode == 1
    assert "the seed's tables are only partly there (12 of 13)" in result.stderr
    assert "\n  Rating: table missing" in result.stderr
    assert "\n  StoryAuditLog.tenantId: new NOT NULL column without a default" in result.stderr
    assert public_catalog(fresh_url) == before
    assert DEFAULT_APP_SCHEMA not in schemas(fresh_url)


# One row in every app table of an installation made before the app had a schema of its own.
LEGACY_ROWS = (
    """INSERT INTO "User" (id, email, role, "updatedAt") VALUES ('u1', 'dev@example.com', 'DEVELOPER', now())""",
    """INSERT INTO "Project" (id, "clientId", name, "updatedAt") VALUES ('p1', 'u1', 'Shop', now())""",
    """INSERT INTO "Story" (id, "projectId", "epicNumber", "storyNumber", title, description,
        "acceptanceCriteria", "updatedAt") VALUES ('s1', 'p1', 1, 1, 'Cart', 'd', 'ac', now())""",
    """INSERT INTO "Opportunity" (id, "projectId", stage, title, description, budget, "updatedAt")
        VALUES ('o1', 'p1', 'developer', 'Story 1.1', 'd', '{}', now())""",
    """INSERT INTO webhook_inbox (delivery_id, event, payload, received_at, next_attempt_at)
        VALUES ('d1', 'push', '\\x7b7d', now(), now())""",
    """INSERT INTO installation_repository (repository_id, installation_id, full_name, full_name_key, added_at)
        VALUES (7, 9, 'acme/shop', 'acme/shop', now())""",
    "INSERT INTO installation_status (installation_id, updated_at) VALUES (9, now())",
    "INSERT INTO story_opportunity (story_id, opportunity_id, created_at) VALUES ('s1', 'o1', now())",
    """INSERT INTO pull_request_link (repository_key, pr_number, repository, project_id, story_id, html_url,
        author_login, head_sha, head_ref, draft, state, updated_at)
        VALUES ('acme/shop', 4, 'acme/shop', 'p1', 's1', 'https://x', 'dev', 'abc', 'b', false, 'open', now())""",
    "INSERT INTO story_state (story_id, updated_at) VALUES ('s1', now())",
    """INSERT INTO gate_review (story_id, path, blob_sha, commit_sha, decision, accepted, reason,
        reviewer_login, committed_at, recorded_at)
        VALUES ('s1', 'docs/qa/gates/1.1.yml', 'b1', 'c1', 'PASS', true, 'ok', 'qa', now(), now())""",
    """INSERT INTO escrow_release_request (id, story_id, expert_id, reason, created_at, updated_at)
        VALUES ('r1', 's1', 'u1', 'DONE', now(), now())""",
    """INSERT INTO github_outbox (installation_id, repository, kind, target, payload, next_attempt_at, updated_at)
        VALUES (9, 'acme/shop', 'check_run', 'abc', '{}', now(), now())""",
)


def test_an_installation_from_before_the_app_schema_is_moved_with_every_row(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0003_story_workflow")
    # As earlier releases left it: the app's tables and alembic_version in `public`, no schema of its own.
    ours = tables_in(fresh_url, DEFAULT_APP_SCHEMA)
    moves = [f'ALTER TABLE {DEFAULT_APP_SCHEMA}."{t}" SET SCHEMA public' for t in ours]
    asyncio.run(pg_execute(fresh_url, *moves, f"DROP SCHEMA {DEFAULT_APP_SCHEMA}"))
    asyncio.run(pg_execute(fresh_url, *LEGACY_ROWS))
    assert tables_in(fresh_url, "public") >= LEGACY_APP_TABLES | {"alembic_version"}
    rows = {t: query(fresh_url, f'SELECT * FROM public."{t}" ORDER BY 1') for t in LEGACY_APP_TABLES}
    assert all(len(r) == 1 for r in rows.values()), rows

    migrate.upgrade(fresh_url)

    assert not (tables_in(fresh_url, "public") & (APP_TABLES | {"alembic_version"}))
    assert tables_in(fresh_url, DEFAULT_APP_SCHEMA) == APP_TABLES | {"alembic_version"}
    moved = {t: query(fresh_url, f'SELECT * FROM {DEFAULT_APP_SCHEMA}."{t}" ORDER BY 1') for t in LEGACY_APP_TABLES}
    # Later revisions add columns at the end; the columns the rows had are kept as they were.
    assert {t: [tuple(r)[: len(rows[t][0])] for r in moved[t]] for t in moved} == rows
    # Moved, not copied: sequences and foreign keys came along.
    asyncio.run(
        pg_execute(
            fresh_url,
            """INSERT INTO github_outbox (installation_id, repository, kind, target, payload, next_attempt_at,
                updated_at) VALUES (9, 'acme/shop', 'check_run', 'def', '{}', now(), now())""",
        )
    )
    assert query(fresh_url, "SELECT id FROM github_outbox ORDER BY id") == [(1,), (2,)]
    with pytest.raises(Exception, match="escrow_release_request_story_id_fkey"):
        asyncio.run(pg_execute(fresh_url, 'DELETE FROM "Story"'))

    # And back, for a release that predates the app's schema.
    migrate.downgrade(fresh_url, "0003_story_workflow")
    assert tables_in(fresh_url, "public") >= LEGACY_APP_TABLES
    for table in LEGACY_APP_TABLES - {"github_outbox"}:
        assert query(fresh_url, f'SELECT * FROM public."{table}" ORDER BY 1') == rows[table]


async def test_another_app_schema_name_is_used_by_every_connection(fresh_url: str) -> None:
    """DATABASE_APP_SCHEMA reaches the migrations, the engine, readiness and the ingress's own connections."""
    from github_app.db.types import utcnow
    from github_app.inbox.writers import AsyncpgInboxWriter
    from github_app.runtime import Runtime
    from github_app.server import readiness
    from github_app.webhook import Delivery
    from tests.conftest import make_settings

    await asyncio.to_thread(build_marketplace_database, fresh_url)
    await asyncio.to_thread(migrate.upgrade, fresh_url, "head", "acme_app")
    assert await asyncio.to_thread(tables_in, fresh_url, "acme_app") == APP_TABLES | {"alembic_version"}
    assert DEFAULT_APP_SCHEMA not in await asyncio.to_thread(schemas, fresh_url)

    runtime = await Runtime.create(make_settings(fresh_url, database_app_schema="acme_app"))
    writer = await AsyncpgInboxWriter.connect(fresh_url, "acme_app")
    try:
        assert await readiness(runtime)() is None
        stored = await writer.insert_batch([Delivery("d-1", "ping", None, None, None, b"{}", utcnow())])
        assert stored == {"d-1"}
        async with runtime.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT delivery_id FROM acme_app.webhook_inbox"))).all()
        assert [r[0] for r in rows] == ["d-1"]
    finally:
        await writer.close()
        await runtime.close()
