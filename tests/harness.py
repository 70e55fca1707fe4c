"""The whole app in one test: signed deliveries over HTTP into the real ingress, the real worker and
handlers, the real database, and the fake GitHub behind the real client."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from github_app.inbox.group_commit import GroupCommitWriter
from github_app.inbox.worker import Worker
from github_app.runtime import Runtime
from github_app.server import api_context, default_router, depth_sampler, open_writer, readiness
from github_app.web import WEBHOOK_PATH, create_app
from tests.conftest import WEBHOOK_SECRET
from tests.deliveries import headers_for


@dataclass
class App:
    client: TestClient
    runtime: Runtime
    worker: Worker
    sent: list[str] = field(default_factory=list)

    async def deliver(
        self, event: str, data: dict[str, Any], delivery_id: str | None = None, *, process: bool = True
    ) -> int:
        body = json.dumps(data).encode()
        delivery_id = delivery_id or str(uuid.uuid4())
        resp = await self.client.post(
            WEBHOOK_PATH, data=body, headers=headers_for(event, body, WEBHOOK_SECRET, delivery_id)
        )
        self.sent.append(delivery_id)
        if process:
            await self.process()
        return resp.status

    async def process(self) -> None:
        await self.worker.run_until_idle()


@pytest.fixture
async def app(aiohttp_client: Any, app_runtime: Runtime) -> AsyncIterator[App]:
    writer = GroupCommitWriter(await open_writer(app_runtime))
    writer.start()
    worker = Worker(app_runtime, default_router())
    client = await aiohttp_client(
        create_app(
            writer,
            (WEBHOOK_SECRET,),
            readiness(app_runtime),
            depth_sampler(app_runtime),
            api=api_context(app_runtime, worker),
        )
    )
    yield App(client, app_runtime, worker)
    await writer.close()
    await writer.writer.close()
