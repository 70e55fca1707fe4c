"""An outbox sender in a process of its own, for tests of the pace every process shares:
`python -m tests.sender_process DB_URL API_URL KEY_FILE NAME CREATES_PER_MINUTE`. It sends what is due
and exits once nothing more is due within a few seconds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from github_app.github.client import GitHubApp
from github_app.outbox.sender import OutboxSender
from github_app.runtime import Runtime
from tests.conftest import make_settings
from tests.github_fixtures import FAST_RETRY, GITHUB_APP_ID


async def send(url: str, api_url: str, key: str, name: str, creates_per_minute: int) -> None:
    settings = make_settings(url, github_app_id=GITHUB_APP_ID, github_private_key=key, github_api_url=api_url)
    runtime = await Runtime.create(settings)
    runtime.github = GitHubApp(GITHUB_APP_ID, key, api_url, runtime.http, retry_policy=FAST_RETRY)
    try:
        sender = OutboxSender(runtime, name=name, writes_per_second=200.0, creates_per_minute=creates_per_minute)
        await sender.run_until_idle(timeout=3)
    finally:
        await runtime.close()


def main() -> None:
    url, api_url, key_file, name, creates = sys.argv[1:6]
    asyncio.run(send(url, api_url, Path(key_file).read_text(), name, int(creates)))


if __name__ == "__main__":
    main()
