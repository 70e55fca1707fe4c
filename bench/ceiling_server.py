"""The ceiling for the ingress benchmark: a bare aiohttp server that reads the body and returns 200.

No verification, no parsing, no storage, no logging: whatever `bmad-app serve` does on top of this costs
throughput, so this row bounds what any aiohttp ingress can reach on the machine.

    python bench/ceiling_server.py PORT        # listens on 127.0.0.1:PORT until SIGTERM/SIGINT
"""

from __future__ import annotations

import sys

from aiohttp import web

WEBHOOK_PATH = "/api/github/webhooks"


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


async def ping(_request: web.Request) -> web.Response:
    return web.Response(text="pong")


def make_app() -> web.Application:
    app = web.Application(client_max_size=25 * 1024 * 1024)
    app.router.add_post(WEBHOOK_PATH, receive)
    app.router.add_get("/ping", ping)
    return app


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print(f"usage: {argv[0]} PORT", file=sys.stderr)
        return 2
    # run_app turns SIGTERM and SIGINT into a graceful shutdown.
    web.run_app(make_app(), host="127.0.0.1", port=int(argv[1]), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
