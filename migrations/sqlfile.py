"""Run a DDL file statement by statement (drivers execute one statement per call)."""

from __future__ import annotations

from pathlib import Path

from alembic import op

SQL_DIR = Path(__file__).parent / "sql"


def statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def run_sql_file(name: str) -> None:
    for statement in statements((SQL_DIR / name).read_text(encoding="utf-8")):
        op.execute(statement)
