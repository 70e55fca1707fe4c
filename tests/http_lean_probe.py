"""An HTTP-only process of `bmad-app serve` on PostgreSQL (its parent, or an extra WEB_PROCESSES one), as
a process of its own: configured from the environment like production, it imports what `serve` imports,
stores a delivery, answers the probes, then a few API requests. Prints what it answered and which
SQLAlchemy modules were loaded before the first API request and after it."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def sqlalchemy_modules() -> list[str]:
    return sorted(m for m in sys.modules if m == "sqlalchemy" or m.startswith("sqlalchemy."))


async def main() -> None:
    import aiohttp

    from github_app.cli import build_parser
    from github_app.config import load_settings
    from github_app.server import http_settings, run_server
    from github_app.web import WEBHOOK_PATH
    from tests.deliveries import encode, headers_for, payload

    build_parser().parse_args(["serve"])
    settings = http_settings(load_settings())
    stop = asyncio.Event()
    ports: list[int] = []
    server = asyncio.create_task(
        run_server(settings, with_worker=False, reuse_port=True, stop=stop, started=ports.append)
    )
    while not ports:
        if server.done():  # it could not start: say why instead of waiting forever
            server.result()
            raise RuntimeError("the HTTP server stopped before it listened")
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{ports[0]}"
    report: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/readyz") as response:
            report["readyz"] = [response.status, await response.json()]
        body = encode(payload("installation", "created.payload.json"))
        headers = headers_for("installation", body, settings.webhook_secrets[0])
        async with http.post(base + WEBHOOK_PATH, data=body, headers=headers) as response:
            report["webhook"] = response.status
        async with http.get(base + "/metrics") as response:
            page = await response.text()
            report["depth"] = sorted(line for line in page.splitlines() if line.startswith("webhook_inbox_depth{"))
        report["before_api"] = sqlalchemy_modules()
        answers = []
        for method, path in (
            ("GET", "/api/v1/openapi.json"),
            ("GET", "/api/v1/projects"),
            ("PUT", "/api/v1/projects"),
            ("GET", "/api/v1/nothing-here"),
        ):
            async with http.request(method, base + path) as response:
                body = await response.json()
                answers.append([method, path, response.status, body.get("error", {}).get("code")])
        report["api"] = answers
        report["after_api"] = bool(sqlalchemy_modules())
    stop.set()
    await server
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
