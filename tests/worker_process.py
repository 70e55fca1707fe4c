"""A real worker process for crash and shutdown tests: `python -m tests.worker_process DB_URL MARKER SLEEP`.

Its handler records that it started (MARKER file), sleeps SLEEP seconds, then writes an effect row: a
kill -9 during the sleep must lose nothing, a SIGTERM must let the sleep finish.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gidgethub import routing, sansio
from sqlalchemy import text

from github_app.handling import HandlerContext
from github_app.server import run_worker
from tests.conftest import make_settings


def build_router(marker: Path, sleep: float, name: str) -> routing.Router:
    router = routing.Router()

    @router.register("push")
    async def slow(event: sansio.Event, ctx: HandlerContext) -> None:
        marker.write_text(event.delivery_id or "")
        await asyncio.sleep(sleep)
        await ctx.session.execute(
            text("INSERT INTO test_effects (delivery_id, worker) VALUES (:d, :w)"),
            {"d": event.delivery_id, "w": name},
        )

    return router


def main() -> None:
    url, marker, sleep = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    settings = make_settings(url, worker_lease_seconds=1.0, worker_heartbeat_seconds=0.2)
    asyncio.run(run_worker(settings, router=build_router(marker, sleep, "subprocess")))


if __name__ == "__main__":
    main()
