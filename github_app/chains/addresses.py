"""Addresses and escrow ids, as the marketplace's web page computes them too (see the README).

Pure functions: no network, no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eth_utils import is_checksum_address, keccak, to_checksum_address

POLYGON = "polygon"
SOLANA = "solana"
CHAINS = (POLYGON, SOLANA)
CHAIN_NAMES = {POLYGON: "Polygon", SOLANA: "Solana"}

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")


class InvalidAddress(ValueError):
    pass


def evm_address(text: str) -> str:
    """An EIP-55 checksummed address, as typed. All-lowercase is refused too: the checksum is what
    catches a mistyped character before money goes to it."""
    value = text.strip()
    if not _HEX_ADDRESS.fullmatch(value):
        raise InvalidAddress(f"{value!r} is not an EVM address (0x and 40 hexadecimal digits)")
    if not is_checksum_address(value):
        raise InvalidAddress(f"{value!r} does not carry a valid EIP-55 checksum (mixed-case) spelling")
    if int(value, 16) == 0:
        raise InvalidAddress("the zero address cannot hold funds")
    return value


def solana_address(text: str) -> str:
    """A base58 public key of exactly 32 bytes."""
    from solders.pubkey import Pubkey

    value = text.strip()
    if not _BASE58.fullmatch(value):
        raise InvalidAddress(f"{value!r} is not a base58 Solana address")
    try:
        key = Pubkey.from_string(value)
    except ValueError as exc:
        raise InvalidAddress(f"{value!r} is not a 32-byte base58 Solana address") from exc
    if bytes(key) == bytes(32):
        raise InvalidAddress("the all-zero key cannot hold funds")
    return str(key)


def address_for(chain: str, text: str) -> str:
    if chain == POLYGON:
        return evm_address(text)
    if chain == SOLANA:
        return solana_address(text)
    raise InvalidAddress(f"unknown chain {chain!r}: use one of {', '.join(CHAINS)}")


def evm_ref(escrow_row_id: str) -> bytes:
    """keccak256 of the UTF-8 bytes of `Escrow.id`: the `ref` a client passes to `fund`."""
    return keccak(escrow_row_id.encode("utf-8"))


def evm_escrow_id(client: str, escrow_row_id: str) -> bytes:
    """The contract's key for `client`'s funding of the row: keccak256(abi.encode(client, ref)), as its
    `escrowIdOf(client, ref)` answers. Another funder of the same ref has another id."""
    owner = bytes.fromhex(evm_address(to_checksum_address(client))[2:])
    return keccak(bytes(12) + owner + evm_ref(escrow_row_id))


@dataclass(frozen=True)
class EvmFunding:
    """Everything a client (or an operator, a bot command, a demo) needs to fund one Polygon escrow."""

    escrow_row_id: str
    contract: str
    client: str
    expert: str
    token: str
    amount: int
    fee_bps: int
    ref: bytes
    escrow_id: bytes

    @property
    def approve_call(self) -> str:
        return f"{self.token}.approve({self.contract}, {self.amount})"

    @property
    def fund_call(self) -> str:
        return f"{self.contract}.fund(0x{self.ref.hex()}, {self.expert}, {self.token}, {self.amount}, {self.fee_bps})"

    @property
    def fund_args(self) -> tuple[bytes, str, str, int, int]:
        """The arguments of `fund`, in order, for a contract binding."""
        return (self.ref, self.expert, self.token, self.amount, self.fee_bps)

    def instructions(self) -> str:
        return (
            f"From {self.client}, on the Polygon escrow contract {self.contract}:\n"
            f"1. {self.approve_call}\n"
            f"2. {self.fund_call}\n"
            f"The escrow is then 0x{self.escrow_id.hex()} (escrowIdOf({self.client}, 0x{self.ref.hex()})); "
            "funding from any other address is not this escrow and is never accepted."
        )


def evm_funding(
    escrow_row_id: str, *, contract: str, client: str, expert: str, token: str, amount: int, fee_bps: int
) -> EvmFunding:
    """The one derivation of a Polygon escrow's funding: `ref` from `Escrow.id`, the escrow id from the
    client's wallet, and the exact `fund(...)` call. Addresses must be EIP-55 (raises InvalidAddress)."""
    client, expert, token, contract = (evm_address(a) for a in (client, expert, token, contract))
    if amount <= 0:
        raise ValueError("the amount must be a positive number of base units")
    if not 0 <= fee_bps <= 10_000:
        raise ValueError("the fee must be between 0 and 10000 basis points")
    return EvmFunding(
        escrow_row_id=escrow_row_id,
        contract=contract,
        client=client,
        expert=expert,
        token=token,
        amount=amount,
        fee_bps=fee_bps,
        ref=evm_ref(escrow_row_id),
        escrow_id=evm_escrow_id(client, escrow_row_id),
    )


def solana_escrow_seed(escrow_row_id: str) -> str:
    """`Escrow.id` without dashes: 32 hex characters, the most `create_with_seed` accepts."""
    seed = escrow_row_id.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", seed):
        raise InvalidAddress(f"escrow id {escrow_row_id!r} is not a UUID: no Solana seed for it")
    return seed
