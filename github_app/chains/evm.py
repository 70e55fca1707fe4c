"""The Polygon adapter: the `Escrow` contract through web3.py, one code path for every transport
(`AsyncHTTPProvider` in production, py-evm in-process in tests).

Decisions are driven by reading the contract's state (`escrows(id)`), never by decoding a revert:
reverts surface differently on each node.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import cache
from importlib import resources
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3

from github_app.chains.addresses import POLYGON, evm_escrow_id
from github_app.chains.transactions import SignedTx, TxOutcome
from github_app.domain.escrow import OnChainEscrow

DEFAULT_PRIORITY_FEE_WEI = 30 * 10**9  # Polygon's validators ignore tips under 25-30 gwei
GAS_MARGIN = 1.25
FEE_CACHE_SECONDS = 2.0
BROADCAST_ATTEMPTS = 20


@cache
def artifact() -> dict[str, Any]:
    text = resources.files("github_app.chains").joinpath("artifacts/Escrow.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class EvmChain:
    chain = POLYGON

    def __init__(
        self,
        w3: AsyncWeb3,
        *,
        contract_address: str,
        arbiter_key: str,
        chain_id: int,
        confirmations: int,
        tokens: dict[str, str],
        explorer_url: str = "https://polygonscan.com",
    ) -> None:
        self.w3 = w3
        self.contract = w3.eth.contract(address=w3.to_checksum_address(contract_address), abi=artifact()["abi"])
        self.account: LocalAccount = Account.from_key(arbiter_key)
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.tokens = {symbol.upper(): address for symbol, address in tokens.items()}
        self.explorer_url = explorer_url.rstrip("/")
        self._fees: tuple[float, tuple[int, int]] | None = None

    @property
    def signer(self) -> str:
        return str(self.account.address)

    @classmethod
    def from_settings(cls, settings: Any) -> EvmChain:
        from web3 import AsyncHTTPProvider
        from web3.middleware import ExtraDataToPOAMiddleware

        w3 = AsyncWeb3(AsyncHTTPProvider(settings.polygon_rpc_url, request_kwargs={"timeout": 30}))
        # Polygon's blocks carry more extra data than Ethereum's: without this web3 refuses them.
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        return cls(
            w3,
            contract_address=settings.polygon_escrow_contract,
            arbiter_key=settings.polygon_arbiter_key,
            chain_id=settings.polygon_chain_id,
            confirmations=settings.polygon_confirmations,
            tokens=dict(settings.polygon_tokens),
            explorer_url=settings.polygon_explorer_url,
        )

    async def close(self) -> None:
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    def tx_url(self, tx_hash: str) -> str:
        return f"{self.explorer_url}/tx/{tx_hash}"

    def address_of(self, escrow_row_id: str, currency: str = "") -> str:
        return str(self.contract.address)

    def token_for(self, currency: str) -> str | None:
        return self.tokens.get(currency.upper())

    async def check_chain(self) -> str | None:
        """A problem that makes every transaction wrong (a node of another chain), or None."""
        actual = await self.w3.eth.chain_id
        if actual != self.chain_id:
            return f"the Polygon RPC endpoint serves chain {actual}, not POLYGON_CHAIN_ID {self.chain_id}"
        return None

    async def read(self, escrow_row_id: str, currency: str = "") -> OnChainEscrow:
        client, expert, token, amount, fee_bps, status = await self.contract.functions.escrows(
            evm_escrow_id(escrow_row_id)
        ).call(block_identifier="latest")
        return OnChainEscrow(
            status=int(status), client=client, expert=expert, token=token, amount=int(amount), fee_bps=int(fee_bps)
        )

    async def pending_nonce(self) -> int:
        return int(await self.w3.eth.get_transaction_count(self.account.address, "pending"))

    async def fees(self) -> tuple[int, int]:
        """EIP-1559 (maxFeePerGas, maxPriorityFeePerGas): room for the base fee to double twice. Read
        at most once per FEE_CACHE_SECONDS: a burst of releases shares one reading."""
        now = time.monotonic()
        if self._fees is not None and now - self._fees[0] < FEE_CACHE_SECONDS:
            return self._fees[1]
        block = await self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas") or 0)
        try:
            priority = int(await self.w3.eth.max_priority_fee)
        except Exception:  # nodes without eth_maxPriorityFeePerGas
            priority = DEFAULT_PRIORITY_FEE_WEI
        fees = (2 * base + priority, priority)
        self._fees = (now, fees)
        return fees

    async def unsigned(self, kind: str, escrow_row_id: str) -> dict[str, Any]:
        """The release or refund call with gas estimated and fees set; no nonce yet. Raises when the
        node predicts a revert (the caller then reads the escrow's state to learn why)."""
        fn = getattr(self.contract.functions, kind)(evm_escrow_id(escrow_row_id))
        gas = await fn.estimate_gas({"from": self.account.address})
        max_fee, priority = await self.fees()
        return {
            "to": self.contract.address,
            "data": fn._encode_transaction_data(),
            "value": 0,
            "gas": int(gas * GAS_MARGIN),
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
            "chainId": self.chain_id,
            "type": 2,
        }

    def sign(self, tx: dict[str, Any], nonce: int) -> SignedTx:
        signed = self.account.sign_transaction({**tx, "nonce": nonce})
        return SignedTx(
            tx_hash="0x" + bytes(signed.hash).hex(), raw=bytes(signed.raw_transaction), signer=self.signer, nonce=nonce
        )

    async def broadcast(self, tx: SignedTx) -> None:
        """Send the recorded bytes. Sending the same signed transaction twice is harmless (same hash,
        same nonce): a node that already has it says so, and that is not an error here."""
        for attempt in range(BROADCAST_ATTEMPTS):
            try:
                await self.w3.eth.send_raw_transaction(tx.raw)
                return
            except Exception:
                # Each node words "already have it" differently; ask instead of parsing the message.
                if await self._known(tx):
                    return
                # A node that does not queue future nonces (e.g. an automining dev node) refuses this
                # one until the releases signed just before it are in: the same bytes, a moment later.
                ahead = (
                    tx.nonce is not None and await self.w3.eth.get_transaction_count(self.account.address) < tx.nonce
                )
                if not ahead or attempt == BROADCAST_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))

    async def _known(self, tx: SignedTx) -> bool:
        from web3.exceptions import TransactionNotFound

        try:
            await self.w3.eth.get_transaction(tx.tx_hash)  # type: ignore[arg-type]
            return True
        except TransactionNotFound:
            pass
        return tx.nonce is not None and await self.w3.eth.get_transaction_count(self.account.address) > tx.nonce

    async def outcome(self, tx: SignedTx) -> TxOutcome:
        from web3.exceptions import TransactionNotFound

        try:
            receipt = await self.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            receipt = None
        if receipt is not None:
            head = int(await self.w3.eth.block_number)
            return TxOutcome(
                landed=True, succeeded=receipt["status"] == 1, confirmations=head - int(receipt["blockNumber"]) + 1
            )
        if tx.nonce is not None and await self.w3.eth.get_transaction_count(self.account.address, "latest") > tx.nonce:
            # Another transaction took this nonce and ours has no receipt: it can never be included.
            return TxOutcome(landed=False, never_lands=True)
        return TxOutcome(landed=False)

    async def find_transaction(self, kind: str, escrow_row_id: str) -> str | None:
        """The transaction that funded, released or refunded an escrow, from the contract's events."""
        events = self.contract.events
        event = {"fund": events.Funded, "release": events.Released, "refund": events.Refunded}[kind]
        logs = await event.get_logs(from_block=0, argument_filters={"escrowId": evm_escrow_id(escrow_row_id)})
        return "0x" + bytes(logs[0]["transactionHash"]).hex() if logs else None


async def deploy(w3: AsyncWeb3, deployer_key: str, arbiter: str, treasury: str, chain_id: int) -> str:
    """Deploy the escrow contract; returns its address once mined."""
    account = Account.from_key(deployer_key)
    contract = w3.eth.contract(abi=artifact()["abi"], bytecode=artifact()["bytecode"])
    tx = await contract.constructor(arbiter, treasury).build_transaction(
        {
            "from": account.address,
            "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": chain_id,
        }
    )
    signed = account.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=300)
    if receipt["status"] != 1:
        raise RuntimeError("the escrow contract's deployment reverted")
    return str(receipt["contractAddress"])
