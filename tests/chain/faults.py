"""Faults of a real node, for the escrow tests: a JSON-RPC proxy in front of a node (hardhat) that can
refuse chosen methods the way hosted providers do, and the same as a web3 middleware for the in-process
chain. Nothing in the app is patched: the app's own web3 code meets the refusal."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web
from web3 import AsyncWeb3
from web3.exceptions import Web3RPCError
from web3.middleware import Web3Middleware


def _block(value: Any, head: int) -> int:
    if isinstance(value, int):
        return value
    if value in (None, "latest", "pending", "safe", "finalized"):
        return head
    if value == "earliest":
        return 0
    return int(value, 16)


@dataclass
class Rules:
    """What the node refuses right now."""

    down: set[str] = field(default_factory=set)  # methods answered with HTTP 503
    max_log_range: int | None = None  # eth_getLogs over more blocks than this is refused
    refused_log_queries: int = 0
    log_queries: list[tuple[int, int]] = field(default_factory=list)

    def log_refusal(self, params: Any, head: int) -> str | None:
        if not params or not isinstance(params[0], dict):
            return None
        lo, hi = _block(params[0].get("fromBlock"), head), _block(params[0].get("toBlock"), head)
        self.log_queries.append((lo, hi))
        if self.max_log_range is not None and hi - lo + 1 > self.max_log_range:
            self.refused_log_queries += 1
            return f"block range too large: at most {self.max_log_range} blocks per eth_getLogs query"
        return None


class RpcProxy:
    """127.0.0.1 JSON-RPC proxy to `upstream`, applying `rules`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules = Rules()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = ClientSession()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _upstream(self, body: bytes) -> Any:
        assert self._session is not None
        async with self._session.post(self.upstream, data=body, headers={"content-type": "application/json"}) as r:
            return await r.json()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        call = json.loads(body)
        method = call.get("method")
        if method in self.rules.down:
            return web.Response(status=503, text="service unavailable")
        if method == "eth_getLogs" and self.rules.max_log_range is not None:
            head = int(
                (
                    await self._upstream(
                        json.dumps({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []}).encode()
                    )
                )["result"],
                16,
            )
            refusal = self.rules.log_refusal(call.get("params"), head)
            if refusal is not None:
                return web.json_response(
                    {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": -32005, "message": refusal}}
                )
        elif method == "eth_getLogs":
            self.rules.log_refusal(call.get("params"), 0)
        return web.json_response(await self._upstream(body))


def add_hook(w3: AsyncWeb3, method: str, action: Callable[[Any], Awaitable[None]]) -> None:
    """Run `action(params)` before every `method` request the node receives from this web3."""

    class Hook(Web3Middleware):
        async def async_request_processor(self, m: Any, params: Any) -> Any:
            if m == method:
                await action(params)
            return m, params

    w3.middleware_onion.add(Hook)


def refuse_long_log_ranges(w3: AsyncWeb3, rules: Rules) -> None:
    """The in-process chain refuses eth_getLogs over more than `rules.max_log_range` blocks."""

    async def check(params: Any) -> None:
        head = int(await w3.eth.block_number)
        refusal = rules.log_refusal(params, head)
        if refusal is not None:
            raise Web3RPCError(refusal)

    add_hook(w3, "eth_getLogs", check)
