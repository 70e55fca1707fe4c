"""An HTTP-only process on PostgreSQL loads no SQLAlchemy (about 19 MiB of memory in each process) until
an API request needs it: the webhook endpoint, /readyz and /metrics run over plain asyncpg."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE_URL, WEBHOOK_SECRET
from tests.test_cli import ROOT, clean_env, free_port


def test_an_http_only_process_serves_without_sqlalchemy_until_an_api_request(db_url: str, tmp_path: Path) -> None:
    if not TEST_DATABASE_URL:
        pytest.skip("HTTP-only processes are the PostgreSQL layout; on SQLite the server writes through SQLAlchemy")
    env = clean_env(tmp_path, DATABASE_URL=db_url, PORT=str(free_port()), GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET)
    result = subprocess.run(
        [sys.executable, "-m", "tests.http_lean_probe"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["readyz"] == [200, {"status": "ready"}]
    assert report["webhook"] == 202
    assert report["depth"] == [  # no worker runs: the delivery waits
        'webhook_inbox_depth{state="dead"} 0.0',
        'webhook_inbox_depth{state="done"} 0.0',
        'webhook_inbox_depth{state="pending"} 1.0',
        'webhook_inbox_depth{state="processing"} 0.0',
    ]
    assert report["before_api"] == [], "SQLAlchemy was loaded before any API request"
    # The API, loaded on its first request, answers as it does when mounted eagerly.
    assert report["api"] == [
        ["GET", "/api/v1/openapi.json", 200, None],
        ["GET", "/api/v1/projects", 401, "unauthorized"],
        ["PUT", "/api/v1/projects", 405, "method_not_allowed"],
        ["GET", "/api/v1/nothing-here", 404, "not_found"],
    ]
    assert report["after_api"]
