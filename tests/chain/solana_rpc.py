"""A small Solana JSON-RPC server on 127.0.0.1 backed by LiteSVM: the methods the app's production
transport (solana-py's AsyncClient) calls, answered by the real SPL programs. No validator can be
installed from the package registries, so this is the local stand-in for the production path.

It models what the app must cope with on a real cluster, not just the happy path:
- commitment: every request advances the chain one slot; a transaction is `processed` in the slot it
  lands, `confirmed` `confirmed_depth` slots later and `finalized` `finalized_depth` slots later, and
  the block height a client reads depends on the commitment it asks for;
- expiry: each slot has its own blockhash, valid for 150 blocks from when it was first handed out; a
  transaction sent after that is refused ("Blockhash not found");
- preflight: a transaction whose simulation fails is refused with the node's error and never lands
  (`skip_simulation` lands it instead and records the failure, as when state changes between a
  node's preflight and the leader's execution);
- dropped transactions: `drop_sends` sends are acknowledged with their signature and never land;
- a broken endpoint: `fail_http` answers every request with HTTP 500.
Account reads answer the latest state at any commitment (LiteSVM keeps no older state)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

BLOCKHASH_VALIDITY = 150


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass
class Landed:
    slot: int
    err: Any  # the TransactionError's JSON form, or None


def ui_error(err: Any) -> Any:
    """A LiteSVM TransactionError in the JSON form a node answers with."""
    name = type(err).__name__
    if name == "TransactionErrorFieldless":
        return str(err).rsplit(".", 1)[-1]
    if name == "TransactionErrorInstructionError":
        inner = err.err
        inner_name = type(inner).__name__
        if inner_name == "InstructionErrorCustom":
            detail: Any = {"Custom": inner.code}
        elif inner_name == "InstructionErrorFieldless":
            detail = str(inner).rsplit(".", 1)[-1]
        else:
            detail = {inner_name.removeprefix("InstructionError"): json.loads(inner.to_json())}
        return {"InstructionError": [err.index, detail]}
    return {name.removeprefix("TransactionError"): json.loads(err.to_json())}


def _simulation_data(err: Any, logs: list[str]) -> dict[str, Any]:
    return {"err": err, "logs": logs, "accounts": None, "unitsConsumed": 0, "returnData": None}


class LiteSvmRpc:
    def __init__(self, svm: LiteSVM, *, confirmed_depth: int = 1, finalized_depth: int = 3) -> None:
        self.svm = svm
        self.confirmed_depth = confirmed_depth
        self.finalized_depth = finalized_depth
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.landed: dict[str, Landed] = {}
        self.blockhash_expiry: dict[str, int] = {}
        self.issued_at: dict[str, int] = {}
        # Every blockhash handed out stays usable until its last valid height, which this server
        # enforces itself (LiteSVM on its own accepts only its latest one).
        svm.with_blockhash_check(False)
        self.drop_sends = 0
        self.drop: Callable[[str], bool] | None = None  # which signatures to acknowledge and lose
        self.skip_simulation = False
        self.fail_http = False
        self.advance_per_request = 1
        self.sent: list[str] = []  # every signature a client sent, dropped or not

    # --- the chain's clock --------------------------------------------------------------------

    @property
    def slot(self) -> int:
        return int(self.svm.get_clock().slot)

    def advance(self, slots: int = 1) -> None:
        if slots > 0:
            self.svm.warp_to_slot(self.slot + slots)

    def height(self, config: dict[str, Any] | None) -> int:
        commitment = (config or {}).get("commitment", "finalized")
        depth = {"processed": 0, "confirmed": self.confirmed_depth}.get(commitment, self.finalized_depth)
        return self.slot - depth

    def _context(self) -> dict[str, Any]:
        return {"slot": self.slot, "apiVersion": "2.0.0"}

    # --- transport ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_http:
            return web.Response(status=500, text="upstream unavailable")
        body = await request.json()
        method, params = body["method"], body.get("params", [])
        self.advance(self.advance_per_request)
        try:
            result = getattr(self, method)(*params)
        except RpcError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        except Exception as exc:  # noqa: BLE001 - a JSON-RPC error, as a node answers
            return web.json_response(
                {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32603, "message": str(exc)}}
            )
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    # --- methods ------------------------------------------------------------------------------

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
        blockhash = str(self.svm.latest_blockhash())
        height = self.height(config)
        if self.issued_at.get(blockhash, self.slot) < self.slot:
            self.svm.expire_blockhash()  # a cluster makes a new blockhash every slot
            blockhash = str(self.svm.latest_blockhash())
        self.issued_at.setdefault(blockhash, self.slot)
        # A blockhash's life is fixed when it is first seen, whatever commitment asks for it later.
        last_valid = self.blockhash_expiry.setdefault(blockhash, height + BLOCKHASH_VALIDITY)
        return {"context": self._context(), "value": {"blockhash": blockhash, "lastValidBlockHeight": last_valid}}

    def getBlockHeight(self, config: dict[str, Any] | None = None) -> int:  # noqa: N802
        return self.height(config)

    def getMinimumBalanceForRentExemption(self, size: int, config: dict[str, Any] | None = None) -> int:  # noqa: N802
        return int(self.svm.minimum_balance_for_rent_exemption(size))

    def sendTransaction(self, encoded: str, config: dict[str, Any] | None = None) -> str:  # noqa: N802
        tx = Transaction.from_bytes(base64.b64decode(encoded))
        signature = str(tx.signatures[0])
        self.sent.append(signature)
        if signature in self.landed or self.svm.get_transaction(tx.signatures[0]) is not None:
            raise RpcError(
                -32002,
                "Transaction simulation failed: This transaction has already been processed",
                _simulation_data("AlreadyProcessed", []),
            )
        last_valid = self.blockhash_expiry.get(str(tx.message.recent_blockhash))
        if last_valid is not None and self.slot > last_valid:
            raise RpcError(
                -32002, "Transaction simulation failed: Blockhash not found", _simulation_data("BlockhashNotFound", [])
            )
        if self.drop_sends > 0 or (self.drop is not None and self.drop(signature)):
            self.drop_sends = max(0, self.drop_sends - 1)
            return signature  # acknowledged, never forwarded to a leader
        if not (config or {}).get("skipPreflight") and not self.skip_simulation:
            simulated = self.svm.simulate_transaction(tx)
            if isinstance(simulated, FailedTransactionMetadata):
                err = ui_error(simulated.err())
                raise RpcError(
                    -32002,
                    f"Transaction simulation failed: {simulated.err()}",
                    _simulation_data(err, list(simulated.meta().logs())),
                )
        result = self.svm.send_transaction(tx)
        err = ui_error(result.err()) if isinstance(result, FailedTransactionMetadata) else None
        self.landed[signature] = Landed(self.slot, err)
        return signature

    def getSignatureStatuses(self, signatures: list[str], config: dict[str, Any] | None = None) -> Any:  # noqa: N802
        values: list[Any] = []
        for sig in signatures:
            landed = self.landed.get(sig)
            if landed is None:
                found = self.svm.get_transaction(Signature.from_string(sig))
                if found is None:
                    values.append(None)
                    continue
                # Sent straight to the VM by a test (a client's funding): long final.
                err = ui_error(found.err()) if isinstance(found, FailedTransactionMetadata) else None
                landed = Landed(self.slot - self.finalized_depth, err)
            age = self.slot - landed.slot
            status = (
                "finalized"
                if age >= self.finalized_depth
                else "confirmed"
                if age >= self.confirmed_depth
                else "processed"
            )
            values.append(
                {
                    "slot": landed.slot,
                    "confirmations": None if status == "finalized" else age,
                    "err": landed.err,
                    "status": {"Ok": None} if landed.err is None else {"Err": landed.err},
                    "confirmationStatus": status,
                }
            )
        return {"context": self._context(), "value": values}

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)  # hosted endpoints carry their API key in the path
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
