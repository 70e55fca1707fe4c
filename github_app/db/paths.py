from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url


def ensure_sqlite_directory(url: str) -> None:
    """The default database lives in a per-user directory that may not exist yet."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
