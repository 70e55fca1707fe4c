"""The OpenAPI description stays true: schemathesis calls every operation of /api/v1 on a running server
with generated input (ids, cursors, limits, states) and checks every answer against the description
(status documented, body and headers matching their schemas, no server error)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from github_app.api.openapi import spec
from github_app.api.ratelimit import RateLimiter
from github_app.config import Settings
from github_app.db import migrate
from github_app.runtime import Runtime


@dataclass
class Served:
    url: str
    key: str


def _serve(
    url: str, ready: list[Served], stop_box: list[asyncio.Event], loop_box: list[asyncio.AbstractEventLoop]
) -> None:
    async def main() -> None:
        from aiohttp import web

        from github_app.api import keys
        from github_app.api.routes import ApiContext, add_api
        from github_app.db.enums import Role
        from github_app.db.models import Project, User
        from github_app.db.types import new_id

        runtime = await Runtime.create(Settings(database_url=url))
        async with runtime.sessionmaker() as s, s.begin():
            user = User(id=new_id(), email="ops@example.com", name="Ops", role=Role.PM)
            s.add(user)
            await s.flush()
            s.add(Project(id=new_id(), client_id=user.id, name="Widgets"))
            _id, key = await keys.create(s, "ops@example.com", "schema-check", admin=True)
        app = web.Application()
        add_api(app, ApiContext(runtime.engine, runtime.sessionmaker, RateLimiter(per_minute=10**6)))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        stop_box.append(stop)
        loop_box.append(asyncio.get_running_loop())
        ready.append(Served(f"http://127.0.0.1:{runner.addresses[0][1]}", key))
        await stop.wait()
        await runner.cleanup()
        await runtime.close()

    asyncio.run(main())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API on a real socket, in a thread of its own (schemathesis calls it synchronously)."""
    url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('api')) / 'api.sqlite3'}"
    migrate.upgrade(url)
    ready: list[Served] = []
    stops: list[asyncio.Event] = []
    loops: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=_serve, args=(url, ready, stops, loops), daemon=True)
    thread.start()
    while not ready:
        assert thread.is_alive(), "the API server did not start"
        thread.join(0.05)
    yield ready[0]
    loops[0].call_soon_threadsafe(stops[0].set)
    thread.join(30)


SCHEMA = schemathesis.openapi.from_dict(spec())
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}


# Negative input exists only where the description constrains something: the paged lists' limit and
# cursor, the deliveries' state. Path ids are any string.
CONSTRAINED = ("GET /api/v1/projects", "GET /api/v1/projects/{projectId}/stories", "GET /api/v1/deliveries")
RUNS = [(label, schemathesis.GenerationMode.POSITIVE) for label in sorted(OPERATIONS)]
RUNS += [(label, schemathesis.GenerationMode.NEGATIVE) for label in CONSTRAINED]


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{label}-{mode.value}" for label, mode in RUNS])
def test_every_answer_matches_the_openapi_description(
    served: Served, label: str, mode: schemathesis.GenerationMode
) -> None:
    """Positive input (what the description allows) and negative input (what it forbids: a limit out
    of range, an unknown state) alike get an answer the description documents."""
    headers = {"Authorization": f"Bearer {served.key}"}

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=served.url, headers=headers)

    check()
