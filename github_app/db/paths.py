from __future__ import annotations

from pathlib import Path


def ensure_sqlite_directory(url: str) -> None:
    """The default database lives in a per-user directory that may not exist yet."""
    from sqlalchemy.engine import make_url  # not at import: an HTTP-only process on PostgreSQL loads no SQLAlchemy

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
