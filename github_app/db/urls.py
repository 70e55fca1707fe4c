"""Database URLs read without SQLAlchemy: an HTTP-only process opens asyncpg connections from the URL and
never loads SQLAlchemy (about 19 MiB per process), so what it needs of a URL is here.

Only the scheme is read; the rest of the URL is passed on as written (already percent-encoded, as asyncpg
and SQLAlchemy both expect it).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from github_app.db.app_schema import search_path

# SQLAlchemy's own pattern for the part before `://` (`dialect+driver`).
_SCHEME = re.compile(r"([\w+]+)://")


def _split(url: str) -> tuple[str, str]:
    match = _SCHEME.match(url)
    if match is None:
        raise ValueError("not a database URL: it must start with scheme://")
    return match.group(1), url[match.end() :]


def backend_name(url: str) -> str:
    """`postgresql` for `postgresql+asyncpg://...`; ValueError when `url` has no `scheme://`."""
    return _split(url)[0].partition("+")[0]


def is_sqlite(url: str) -> bool:
    return backend_name(url) == "sqlite"


def asyncpg_dsn(url: str, app_schema: str | None = None) -> str:
    """The libpq-style DSN asyncpg wants, with the app's search_path (asyncpg sends unknown DSN parameters
    as server settings)."""
    location, _, query = _split(url)[1].partition("?")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "search_path"]
    params.append(("search_path", search_path(app_schema)))
    return f"postgresql://{location}?{urlencode(params)}"
