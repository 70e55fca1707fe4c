"""The Polygon HTTP transport keeps its connections alive and does not ask the chain id per call, against a
JSON-RPC server on 127.0.0.1 that counts what it is sent."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from web3 import AsyncHTTPProvider, AsyncWeb3

from github_app.chains.rpc_http import KeepAliveHTTPProvider


class CountingNode:
    def __init__(self) -> None:
        self.methods: Counter[str] = Counter()
        self.connections: set[int] = set()
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.connections.add(id(request.transport))
        body: dict[str, Any] = await request.json()
        self.methods[body["method"]] += 1
        result = {"eth_chainId": "0x89", "eth_blockNumber": "0x10"}[body["method"]]
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})


async def calls(provider_class: type[AsyncHTTPProvider], count: int) -> CountingNode:
    """`count` rounds of eth_chainId and eth_blockNumber through a provider of `provider_class`."""
    node = CountingNode()
    await node.server.start_server()
    provider = provider_class(str(node.server.make_url("/")))
    w3 = AsyncWeb3(provider)
    try:
        for _ in range(count):
            assert await w3.eth.chain_id == 137
            assert await w3.eth.block_number == 16
    finally:
        await provider.disconnect()
        await node.server.close()
    return node


async def test_calls_share_one_connection_and_the_chain_id_is_not_asked_per_call() -> None:
    node = await calls(KeepAliveHTTPProvider, 20)
    assert node.methods["eth_blockNumber"] == 20
    # Not once per call: web3's request cache answers after its first reading (it reads twice on start).
    assert node.methods["eth_chainId"] <= 2
    assert len(node.connections) == 1


async def test_web3s_own_provider_opens_a_connection_per_call() -> None:
    """Why the transport above exists: web3's default session closes its connection after each call."""
    node = await calls(AsyncHTTPProvider, 5)
    assert node.methods == {"eth_chainId": 5, "eth_blockNumber": 5}
    assert len(node.connections) == 10
