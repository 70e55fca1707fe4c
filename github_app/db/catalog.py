"""What the seed's tables look like in a live PostgreSQL catalog, and whether the app can work with them.

The marketplace's Prisma Migrate owns the seed tables and keeps changing them. Before the app migrates
(and while it serves) it compares what it relies on, recorded in `seed_catalog.json` from Prisma's
reference DDL, with the live catalog of `public`: every seed table, column (type and nullability), enum
label, primary key, unique constraint and index. What the marketplace added (a column, a table, an enum
label, an index) is fine and reported; anything the app relies on that is missing or changed is a
problem, one line each, naming the table and the column.

Reading is plain SELECTs on pg_catalog: no privilege beyond connecting, nothing written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from github_app.db.app_schema import SEED_SCHEMA

if TYPE_CHECKING:  # the comparison itself needs neither: /readyz runs it over plain asyncpg without SQLAlchemy
    import asyncpg
    from sqlalchemy.engine import Connection

EXPECTED_FILE = Path(__file__).with_name("seed_catalog.json")

# Prisma Migrate's own bookkeeping table: the marketplace's, never the app's concern.
PRISMA_MIGRATIONS = "_prisma_migrations"

# Seed tables the app inserts rows into: a new NOT NULL column without a default there breaks its inserts.
INSERTED_SEED_TABLES = ("Story", "StoryAuditLog", "Deliverable", "Opportunity", "GitHubInstallation")

CATALOG_QUERIES = {
    "tables": """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = :schema
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = :schema
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = :schema ORDER BY 1, 2""",
    "enums": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        JOIN pg_namespace n ON n.oid = t.typnamespace AND n.nspname = :schema
        ORDER BY 1, 2""",
}

Catalog = dict[str, list[tuple[Any, ...]]]


def numbered(sql: str, *names: str) -> str:
    """`sql` with its `:name` parameters as asyncpg's `$1`, `$2`... in the order given: one text of each
    query serves SQLAlchemy and plain asyncpg."""
    for number, name in enumerate(names, 1):
        sql = re.sub(rf"(?<!:):{name}\b", f"${number}", sql)
    return sql


def read_catalog(conn: Connection, schema: str = SEED_SCHEMA) -> Catalog:
    """Every table, column, constraint, index and enum label of one schema, in a stable order.

    Types are rendered without a schema prefix, whatever the connection's search_path.
    """
    from sqlalchemy import text

    return {
        kind: _catalog_rows(kind, conn.execute(text(sql), {"schema": schema}).all(), schema)
        for kind, sql in CATALOG_QUERIES.items()
    }


async def read_catalog_asyncpg(conn: asyncpg.Connection, schema: str = SEED_SCHEMA) -> Catalog:
    """read_catalog over a plain asyncpg connection."""
    return {
        kind: _catalog_rows(kind, await conn.fetch(numbered(sql, "schema"), schema), schema)
        for kind, sql in CATALOG_QUERIES.items()
    }


def _catalog_rows(kind: str, fetched: Iterable[Sequence[Any]], schema: str) -> list[tuple[Any, ...]]:
    rows = [tuple(r) for r in fetched]
    if kind == "columns":
        rows = [(t, n, c, _plain_type(ty, schema), nn, d) for t, n, c, ty, nn, d in rows]
    return rows


def _plain_type(rendered: str, schema: str) -> str:
    prefix = f"{schema}."
    return rendered[len(prefix) :] if rendered.startswith(prefix) else rendered


def _index_shape(indexdef: str) -> str:
    """An index's definition without its name: a renamed index serves the app just as well."""
    return re.sub(r"^CREATE (UNIQUE )?INDEX (\"(?:[^\"]|\"\")*\"|\S+) ON (ONLY )?", r"CREATE \1INDEX ON ", indexdef)


def _index_columns(indexdef: str) -> str:
    match = re.search(r"USING \w+ \((.*)\)", indexdef)
    return match.group(1) if match else indexdef


@dataclass(frozen=True)
class Expectation:
    """What the app relies on in the seed's schema."""

    columns: dict[str, dict[str, tuple[str, bool]]]  # table -> column -> (type, NOT NULL)
    enums: dict[str, list[str]]
    keys: dict[str, list[str]]  # table -> primary key and unique constraint definitions
    indexes: dict[str, list[str]]  # table -> index definitions without names

    def to_json(self) -> str:
        data = {
            "columns": {t: {c: list(v) for c, v in cols.items()} for t, cols in self.columns.items()},
            "enums": self.enums,
            "keys": self.keys,
            "indexes": self.indexes,
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, raw: str) -> Expectation:
        data = json.loads(raw)
        return cls(
            columns={t: {c: (v[0], bool(v[1])) for c, v in cols.items()} for t, cols in data["columns"].items()},
            enums=data["enums"],
            keys=data["keys"],
            indexes=data["indexes"],
        )

    @classmethod
    def from_catalog(cls, catalog: Catalog, tables: tuple[str, ...], enums: tuple[str, ...]) -> Expectation:
        columns: dict[str, dict[str, tuple[str, bool]]] = {t: {} for t in tables}
        for table, _num, column, type_, notnull, _default in catalog["columns"]:
            if table in columns:
                columns[table][column] = (type_, bool(notnull))
        labels: dict[str, list[str]] = {e: [] for e in enums}
        for enum, _order, label in catalog["enums"]:
            if enum in labels:
                labels[enum].append(label)
        keys: dict[str, list[str]] = {t: [] for t in tables}
        for table, _name, contype, definition in catalog["constraints"]:
            if table in keys and contype in ("p", "u"):
                keys[table].append(definition)
        indexes: dict[str, list[str]] = {t: [] for t in tables}
        for table, _name, indexdef in catalog["indexes"]:
            if table in indexes:
                indexes[table].append(_index_shape(indexdef))
        return cls(columns, labels, {t: sorted(k) for t, k in keys.items()}, {t: sorted(i) for t, i in indexes.items()})


@cache
def expected() -> Expectation:
    return Expectation.from_json(EXPECTED_FILE.read_text(encoding="utf-8"))


@dataclass
class SeedReport:
    """`absent`: no seed object at all (the app creates them); `present`: all seed tables there."""

    state: str
    problems: list[str] = field(default_factory=list)
    additions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_seed(conn: Connection, want: Expectation | None = None) -> SeedReport:
    """Compare the live `public` schema with what the app relies on. Reads only."""
    return compare(want or expected(), read_catalog(conn, SEED_SCHEMA))


async def verify_seed_asyncpg(conn: asyncpg.Connection) -> SeedReport:
    """verify_seed over a plain asyncpg connection."""
    return compare(expected(), await read_catalog_asyncpg(conn, SEED_SCHEMA))


def compare(want: Expectation, live: Catalog) -> SeedReport:
    tables = {r[0] for r in live["tables"]}
    enums = {r[0] for r in live["enums"]}
    wanted_tables, wanted_enums = set(want.columns), set(want.enums)
    present_tables, present_enums = wanted_tables & tables, wanted_enums & enums
    if not present_tables and not present_enums:
        return SeedReport("absent")
    report = SeedReport("present" if present_tables == wanted_tables else "partial")
    if report.state == "partial":
        report.problems.append(
            f"the seed's tables are only partly there ({len(present_tables)} of {len(wanted_tables)}): "
            "the app creates them only in a database that has none"
        )
    for table in sorted(wanted_tables - tables):
        report.problems.append(f"{table}: table missing")

    columns: dict[str, dict[str, tuple[str, bool, Any]]] = {}
    for table, _num, column, type_, notnull, default in live["columns"]:
        columns.setdefault(table, {})[column] = (type_, bool(notnull), default)
    for table, wanted in want.columns.items():
        if table not in tables:
            continue
        have = columns.get(table, {})
        for column, (type_, notnull) in wanted.items():
            if column not in have:
                null = "NOT NULL" if notnull else "nullable"
                report.problems.append(f"{table}.{column}: column missing (the app needs {type_} {null})")
                continue
            live_type, live_notnull, _ = have[column]
            if live_type != type_:
                report.problems.append(f"{table}.{column}: type is {live_type}, the app needs {type_}")
            if live_notnull != notnull:
                now, need = ("NOT NULL", "nullable") if live_notnull else ("nullable", "NOT NULL")
                report.problems.append(f"{table}.{column}: is {now}, the app needs it {need}")
        for column, (live_type, live_notnull, default) in have.items():
            if column in wanted:
                continue
            if live_notnull and default is None and table in INSERTED_SEED_TABLES:
                report.problems.append(
                    f"{table}.{column}: new NOT NULL column without a default: the app's inserts into "
                    f"{table} would fail (give it a default or make it nullable)"
                )
            else:
                report.additions.append(f"{table}.{column}: column added by the marketplace ({live_type})")

    labels: dict[str, list[str]] = {}
    for enum, _order, label in live["enums"]:
        labels.setdefault(enum, []).append(label)
    users = _enum_users(want)
    for enum, wanted_labels in want.enums.items():
        where = f" (used by {', '.join(users.get(enum, []))})" if users.get(enum) else ""
        if enum not in labels:
            report.problems.append(f'enum "{enum}": type missing{where}')
            continue
        for label in wanted_labels:
            if label not in labels[enum]:
                report.problems.append(f"enum \"{enum}\": label '{label}' missing{where}")
        for label in labels[enum]:
            if label not in wanted_labels:
                report.additions.append(f"enum \"{enum}\": label '{label}' added by the marketplace")

    keys: dict[str, set[str]] = {}
    for table, _name, contype, definition in live["constraints"]:
        if contype in ("p", "u"):
            keys.setdefault(table, set()).add(definition)
    indexes: dict[str, set[str]] = {}
    for table, _name, indexdef in live["indexes"]:
        indexes.setdefault(table, set()).add(_index_shape(indexdef))
    for table in sorted(wanted_tables & tables):
        for definition in want.keys.get(table, []):
            if definition not in keys.get(table, set()):
                report.problems.append(f"{table}: constraint missing: {definition}")
        for shape in want.indexes.get(table, []):
            if shape not in indexes.get(table, set()):
                kind = "unique index" if shape.startswith("CREATE UNIQUE") else "index"
                report.problems.append(f"{table} ({_index_columns(shape)}): {kind} missing")
        for shape in sorted(indexes.get(table, set()) - set(want.indexes.get(table, []))):
            report.additions.append(f"{table} ({_index_columns(shape)}): index added by the marketplace")

    for table in sorted(tables - wanted_tables - {PRISMA_MIGRATIONS}):
        report.additions.append(f"{table}: table added by the marketplace")
    return report


def _enum_users(want: Expectation) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for table, columns in want.columns.items():
        for column, (type_, _notnull) in columns.items():
            name = type_.strip('"').removesuffix("[]").strip('"')
            if name in want.enums:
                users.setdefault(name, []).append(f"{table}.{column}")
    return users
