"""The HTTP side of `bmad-app serve` (what its parent process runs on PostgreSQL, beside a worker
process), as a process of its own that records every file it opens: configured from the environment
like production, it answers a few requests, stops, and then, as the worker would, builds the chain
backends. Prints {"http": [...], "worker": [...]}: the key files each phase opened."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

WATCHED = {str(Path(p).resolve()) for p in sys.argv[1:]}
OPENED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and args and isinstance(args[0], str | Path) and str(Path(args[0]).resolve()) in WATCHED:
        OPENED.append(str(args[0]))


sys.addaudithook(_audit)


async def main() -> None:
    import aiohttp

    from github_app.cli import build_parser
    from github_app.config import load_settings
    from github_app.escrow.backends import Chains
    from github_app.server import http_settings, run_server
    from github_app.web import WEBHOOK_PATH

    build_parser().parse_args(["serve"])
    settings = load_settings()  # as `bmad-app serve` does in the process that serves HTTP
    stop = asyncio.Event()
    ports: list[int] = []
    server = asyncio.create_task(
        run_server(http_settings(settings), with_worker=False, stop=stop, started=ports.append)
    )
    while not ports:
        if server.done():  # it could not start (the port is taken, say): say why instead of waiting forever
            server.result()
            raise RuntimeError("the HTTP server stopped before it listened")
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{ports[0]}"
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(base + path) as response:
                await response.read()
        headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "probe-1", "X-Hub-Signature-256": "sha256=00"}
        async with http.post(base + WEBHOOK_PATH, data=b"{}", headers=headers) as response:
            await response.read()
    stop.set()
    await server
    http_opened = list(OPENED)
    chains = Chains.from_settings(settings)  # the worker's first act with escrows
    await chains.close()
    worker_opened = OPENED[len(http_opened) :]
    print(json.dumps({"http": http_opened, "worker": worker_opened, "configured": sorted(chains.backends)}))


if __name__ == "__main__":
    asyncio.run(main())
