"""A release worker as its own process, configured from the environment like production
(POLYGON_* variables, AsyncHTTPProvider). With a step name as argument it kills itself with SIGKILL
right after that step: a real `kill -9` at an exact point, nothing flushed, nothing cleaned up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from github_app.config import load_settings
from github_app.escrow.backends import Chains
from github_app.escrow.releases import Releaser
from github_app.runtime import Runtime


async def main(kill_after: str | None) -> None:
    settings = load_settings()
    runtime = await Runtime.create(settings)

    def fault(step: str, _request_id: str) -> None:
        if step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    releaser = Releaser(
        runtime, Chains.from_settings(settings), poll_seconds=0.05, waiting_retry_seconds=0, fault=fault
    )
    try:
        await releaser.run_until_idle()
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
