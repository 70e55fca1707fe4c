"""The HTTP transport to a Polygon node: web3's `AsyncHTTPProvider` with connections kept alive.

web3's own session closes its connection after every call (`force_close`), so each JSON-RPC call pays a
TCP connect and, on a hosted node, a TLS handshake: measured on a local node, one connection per call
and about a third of the release worker's chain time. This provider gives web3 a pooled session per
event loop instead. Idle connections are dropped after KEEPALIVE_SECONDS, under the 5 s that Node.js
servers (hardhat, most gateways) keep them, so a call never lands on a connection the node just closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3

KEEPALIVE_SECONDS = 3.0
MAX_CONNECTIONS = 32
DEFAULT_TIMEOUT_SECONDS = 30.0


class KeepAliveHTTPProvider(AsyncHTTPProvider):
    def __init__(self, endpoint_uri: str, timeout: float = DEFAULT_TIMEOUT_SECONDS, **kwargs: Any) -> None:
        from aiohttp import ClientTimeout

        kwargs.setdefault("request_kwargs", {"timeout": ClientTimeout(total=timeout)})
        # web3 asks the node for its chain id before each gas estimate and call (four times per release).
        # A node's chain id does not change under a running process; the first answer is checked
        # against POLYGON_CHAIN_ID (`check_chain`) and then reused.
        kwargs.setdefault("cache_allowed_requests", True)
        kwargs.setdefault("cacheable_requests", {"eth_chainId"})
        super().__init__(endpoint_uri, **kwargs)
        self._pooled_loops: set[int] = set()

    async def _pool(self) -> None:
        loop = id(asyncio.get_running_loop())
        if loop in self._pooled_loops:
            return
        from aiohttp import ClientSession, TCPConnector

        self._pooled_loops.add(loop)
        connector = TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS)
        await self.cache_async_session(ClientSession(connector=connector, raise_for_status=True))

    async def make_request(self, method: Any, params: Any) -> Any:
        await self._pool()
        return await super().make_request(method, params)

    async def make_batch_request(self, batch_requests: Any) -> Any:
        await self._pool()
        return await super().make_batch_request(batch_requests)

    async def disconnect(self) -> None:
        self._pooled_loops.clear()
        await super().disconnect()


# web3's default middleware the app does not use: it names contracts and wallets by address (no ENS),
# signs locally with gas estimated and fees set (no gas price strategy, no estimate for unsigned sends),
# and checks the node's chain id once at start (`EvmChain.check_chain`), where the validation middleware
# asked for it before every call and estimate. Each layer costs every JSON-RPC call some CPU.
UNUSED_MIDDLEWARE = ("ens_name_to_address", "validation", "gas_price_strategy", "gas_estimate")


def node_web3(endpoint_uri: str) -> AsyncWeb3:
    """The app's web3 for a Polygon node: connections kept alive, only the middleware it needs, and
    Polygon's longer block extra data accepted."""
    from web3.middleware import ExtraDataToPOAMiddleware

    w3 = AsyncWeb3(KeepAliveHTTPProvider(endpoint_uri))
    for name in UNUSED_MIDDLEWARE:
        w3.middleware_onion.remove(name)
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3
