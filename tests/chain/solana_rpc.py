"""A small Solana JSON-RPC server on 127.0.0.1 backed by LiteSVM: the methods the app's production
transport (solana-py's AsyncClient) calls, answered by the real SPL programs. No validator can be
installed from the package registries, so this is the local stand-in for the production path."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata


class LiteSvmRpc:
    def __init__(self, svm: LiteSVM) -> None:
        self.svm = svm
        self.runner: web.AppRunner | None = None
        self.url = ""

    def _context(self) -> dict[str, Any]:
        return {"slot": int(self.svm.get_clock().slot), "apiVersion": "2.0.0"}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        method, params = body["method"], body.get("params", [])
        try:
            result = getattr(self, method)(*params)
        except Exception as exc:  # noqa: BLE001 - a JSON-RPC error, as a node answers
            return web.json_response(
                {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32002, "message": str(exc)}}
            )
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    def getAccountInfo(self, address: str, config: dict[str, Any] | None = None) -> Any:  # noqa: N802
        account = self.svm.get_account(Pubkey.from_string(address))
        value = None
        if account is not None and account.lamports > 0:
            value = {
                "data": [base64.b64encode(bytes(account.data)).decode(), "base64"],
                "executable": account.executable,
                "lamports": account.lamports,
                "owner": str(account.owner),
                "rentEpoch": 0,
                "space": len(bytes(account.data)),
            }
        return {"context": self._context(), "value": value}

    def getLatestBlockhash(self, config: dict[str, Any] | None = None) -> Any:  # noqa: N802
        slot = int(self.svm.get_clock().slot)
        return {
            "context": self._context(),
            "value": {"blockhash": str(self.svm.latest_blockhash()), "lastValidBlockHeight": slot + 150},
        }

    def getBlockHeight(self, config: dict[str, Any] | None = None) -> int:  # noqa: N802
        return int(self.svm.get_clock().slot)

    def getMinimumBalanceForRentExemption(self, size: int, config: dict[str, Any] | None = None) -> int:  # noqa: N802
        return int(self.svm.minimum_balance_for_rent_exemption(size))

    def sendTransaction(self, encoded: str, config: dict[str, Any] | None = None) -> str:  # noqa: N802
        tx = Transaction.from_bytes(base64.b64decode(encoded))
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise RuntimeError(f"Transaction simulation failed: {result.err()}")
        return str(tx.signatures[0])

    def getSignatureStatuses(self, signatures: list[str], config: dict[str, Any] | None = None) -> Any:  # noqa: N802
        values: list[Any] = []
        for sig in signatures:
            found = self.svm.get_transaction(Signature.from_string(sig))
            if found is None:
                values.append(None)
                continue
            err = {"InstructionError": [0, "Custom"]} if isinstance(found, FailedTransactionMetadata) else None
            slot = int(self.svm.get_clock().slot)
            values.append(
                {
                    "slot": slot,
                    "confirmations": None,
                    "err": err,
                    "status": {"Ok": None} if err is None else {"Err": err},
                    "confirmationStatus": "finalized",
                }
            )
        return {"context": self._context(), "value": values}

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
