"""Addresses and escrow ids, as the marketplace's web page computes them too (see the README).

Pure functions: no network, no database.
"""

from __future__ import annotations

import re

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
    from eth_utils import is_checksum_address  # a chain library: loaded only where addresses are checked

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


def evm_escrow_id(escrow_row_id: str) -> bytes:
    """keccak256 of the UTF-8 bytes of `Escrow.id`: the contract's bytes32 key."""
    from eth_utils import keccak

    return keccak(escrow_row_id.encode("utf-8"))


def solana_escrow_seed(escrow_row_id: str) -> str:
    """`Escrow.id` without dashes: 32 hex characters, the most `create_with_seed` accepts."""
    seed = escrow_row_id.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", seed):
        raise InvalidAddress(f"escrow id {escrow_row_id!r} is not a UUID: no Solana seed for it")
    return seed
