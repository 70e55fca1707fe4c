"""The Polygon adapter: the `Escrow` contract through web3.py, one code path for every transport
(`AsyncHTTPProvider` in production, py-evm in-process in tests).

Decisions are driven by reading the contract's state (`escrows(id)`), never by decoding a revert:
reverts surface differently on each node.

An escrow is keyed by its funder: `escrowIdOf(client, keccak256(utf8(Escrow.id)))`. Every call that names
an escrow therefore takes the client's address (`client=`), which the app records when it accepts the
funding (see github_app/chains/addresses.py for the derivation).
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
# A replacement must pay at least 10 % more, max fee and tip both, or nodes refuse it ("underpriced").
REPLACEMENT_BUMP_PERCENT = 12
# eth_getLogs: hosted providers refuse long ranges (many cap at 1,000-10,000 blocks). Search in chunks,
# halving a refused one down to LOG_MIN_CHUNK, and at most LOG_MAX_QUERIES calls per search.
LOG_CHUNK = 2000
LOG_MIN_CHUNK = 16
LOG_MAX_QUERIES = 200


class NoFunder(ValueError):
    """A Polygon escrow named without its funder: its on-chain id cannot be known."""


def _key(client: str | None, escrow_row_id: str) -> bytes:
    if not client:
        raise NoFunder(f"the funder of escrow {escrow_row_id} is not known (the client has no Polygon wallet)")
    return evm_escrow_id(client, escrow_row_id)


@cache
def artifact() -> dict[str, Any]:
    text = resources.files("github_app.chains").joinpath("artifacts/Escrow.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class EvmChain:
    chain = POLYGON
    # Escrows are keyed by the client's address: callers name it (`client=`), see `backends.keyed`.
    keyed_by_funder = True

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
        replace_after: float | None = None,
    ) -> None:
        self.w3 = w3
        self.contract = w3.eth.contract(address=w3.to_checksum_address(contract_address), abi=artifact()["abi"])
        self.account: LocalAccount = Account.from_key(arbiter_key)
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.tokens = {symbol.upper(): address for symbol, address in tokens.items()}
        self.explorer_url = explorer_url.rstrip("/")
        self._fees: tuple[float, tuple[int, int]] | None = None
        self.log_chunk = LOG_CHUNK
        # Seconds after which a release not mined yet is replaced at its nonce with a higher fee.
        self.replace_after = replace_after

    @property
    def signer(self) -> str:
        return str(self.account.address)

    @classmethod
    def from_settings(cls, settings: Any) -> EvmChain:
        from github_app.chains.rpc_http import node_web3

        return cls(
            node_web3(settings.polygon_rpc_url),
            contract_address=settings.polygon_escrow_contract,
            arbiter_key=settings.polygon_arbiter_key,
            chain_id=settings.polygon_chain_id,
            confirmations=settings.polygon_confirmations,
            tokens=dict(settings.polygon_tokens),
            explorer_url=settings.polygon_explorer_url,
            replace_after=settings.polygon_replace_seconds or None,
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

    async def read(
        self, escrow_row_id: str, currency: str = "", *, client: str | None = None, confirmed: bool = False
    ) -> OnChainEscrow:
        """The escrow `client` funded for this row. `confirmed`: as of the newest block with the configured
        confirmations on top (what funding is accepted at), else as of the chain head."""
        key = _key(client, escrow_row_id)
        block: int | None = None
        if confirmed:
            block = max(0, int(await self.w3.eth.block_number) - self.confirmations + 1)
        funder, expert, token, amount, fee_bps, status = await self.contract.functions.escrows(key).call(
            block_identifier=block if block is not None else "latest"
        )
        return OnChainEscrow(
            status=int(status),
            client=funder,
            expert=expert,
            token=token,
            amount=int(amount),
            fee_bps=int(fee_bps),
            block=block,
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

    async def unsigned(self, kind: str, escrow_row_id: str, *, client: str | None = None) -> dict[str, Any]:
        """The release or refund call with gas estimated and fees set; no nonce yet. Raises when the
        node predicts a revert (the caller then reads the escrow's state to learn why)."""
        return await self._unsigned(getattr(self.contract.functions, kind)(_key(client, escrow_row_id)))

    async def unsigned_rescue(self, token: str, to: str) -> dict[str, Any]:
        return await self._unsigned(self.contract.functions.rescue(token, to))

    async def excess(self, token: str) -> int:
        """What the contract holds of `token` beyond what its funded escrows hold: what `rescue` sends."""
        balance_of = self.w3.eth.contract(
            address=self.w3.to_checksum_address(token),
            abi=[
                {
                    "name": "balanceOf",
                    "type": "function",
                    "stateMutability": "view",
                    "inputs": [{"name": "owner", "type": "address"}],
                    "outputs": [{"name": "", "type": "uint256"}],
                }
            ],
        ).functions.balanceOf(self.contract.address)
        balance, held = await asyncio.gather(balance_of.call(), self.contract.functions.held(token).call())
        return int(balance) - int(held)

    async def _unsigned(self, fn: Any) -> dict[str, Any]:
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

    async def replacement(self, tx: SignedTx) -> SignedTx:
        """The same call at the same nonce, paying more: max fee and tip each at least
        REPLACEMENT_BUMP_PERCENT above the stuck transaction's, and never below what the chain asks now.
        Whichever of the two is mined is the payment; the other can then never be."""
        from eth_account.typed_transactions import TypedTransaction
        from hexbytes import HexBytes

        old = TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()
        if tx.nonce is None or int(old["nonce"]) != tx.nonce:
            raise ValueError(f"transaction {tx.tx_hash} has no nonce to replace at")
        max_fee, priority = await self.fees()
        bump = 100 + REPLACEMENT_BUMP_PERCENT
        new_priority = max(priority, -(-int(old["maxPriorityFeePerGas"]) * bump // 100))
        new_max = max(max_fee, -(-int(old["maxFeePerGas"]) * bump // 100), new_priority)
        unsigned = {
            "to": self.w3.to_checksum_address(old["to"]),
            "data": bytes(old["data"]),
            "value": int(old["value"]),
            "gas": int(old["gas"]),
            "maxFeePerGas": new_max,
            "maxPriorityFeePerGas": new_priority,
            "chainId": int(old["chainId"]),
            "type": 2,
        }
        return self.sign(unsigned, tx.nonce)

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

    async def head(self) -> int:
        """The newest block number: a receipt, a confirmation or a used nonce can only change with it."""
        return int(await self.w3.eth.block_number)

    async def outcome(self, tx: SignedTx) -> TxOutcome:
        from web3.exceptions import TransactionNotFound

        # The nonce is read BEFORE the receipt: a transaction mined between the two reads then shows its
        # receipt, instead of a used nonce with no receipt (which would wrongly say "never lands").
        used = None
        if tx.nonce is not None:
            used = int(await self.w3.eth.get_transaction_count(self.account.address, "latest"))
        try:
            receipt = await self.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            receipt = None
        if receipt is not None:
            head = int(await self.w3.eth.block_number)
            return TxOutcome(
                landed=True, succeeded=receipt["status"] == 1, confirmations=head - int(receipt["blockNumber"]) + 1
            )
        if used is not None and tx.nonce is not None and used > tx.nonce:
            # Another transaction took this nonce and ours has no receipt: it can never be included.
            return TxOutcome(landed=False, never_lands=True)
        return TxOutcome(landed=False)

    async def find_transaction(
        self, kind: str, escrow_row_id: str, *, client: str | None = None, from_block: int | None = None
    ) -> str | None:
        """The transaction that funded, released or refunded an escrow, from the contract's events.

        `from_block` is the block at which the app accepted the funding (`escrow_chain_state`): a release
        or refund is searched for forward from it, the funding backward from it. Without one, backward
        from the head. In chunks (LOG_CHUNK blocks, halved when a provider refuses) and at most
        LOG_MAX_QUERIES queries: None when not found within them, never a search from block 0."""
        key = _key(client, escrow_row_id)
        events = self.contract.events
        event = {"fund": events.Funded, "release": events.Released, "refund": events.Refunded}[kind]
        head = int(await self.w3.eth.block_number)
        forward = kind != "fund" and from_block is not None
        start = from_block if from_block is not None else head
        chunk = self.log_chunk
        queries = 0
        lo, hi = (start, head) if forward else (0, min(start, head))
        cursor = lo if forward else hi
        last_error: Exception | None = None
        refused = False
        while queries < LOG_MAX_QUERIES and lo <= cursor <= hi:
            a, b = (cursor, min(hi, cursor + chunk - 1)) if forward else (max(lo, cursor - chunk + 1), cursor)
            queries += 1
            try:
                logs = await event.get_logs(from_block=a, to_block=b, argument_filters={"escrowId": key})
            except Exception as exc:  # a provider's "range too large" / "too many results" / timeout
                last_error = exc
                if chunk <= LOG_MIN_CHUNK:
                    refused = True
                    break
                chunk = max(LOG_MIN_CHUNK, chunk // 2)
                self.log_chunk = chunk  # what this provider accepts: later searches start there
                continue
            if logs:
                return "0x" + bytes(logs[0]["transactionHash"]).hex()
            cursor = b + 1 if forward else a - 1
        if refused:
            raise LogSearchRefused(
                f"the Polygon node refused every log search for escrow {escrow_row_id} "
                f"({type(last_error).__name__}), even over {chunk} blocks"
            )
        return None


class LogSearchRefused(RuntimeError):
    pass


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
