"""What the release worker records of a chain transaction, for every chain: plain data, so that the
worker names them without loading any chain library (those load only when a chain is configured)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str  # 0x-prefixed hex
    raw: bytes
    signer: str
    nonce: int | None = None
    recent_blockhash: str | None = None
    last_valid_block_height: int | None = None


@dataclass(frozen=True)
class TxOutcome:
    """What the chain says of a recorded transaction."""

    landed: bool  # included in a block
    succeeded: bool = False
    confirmations: int = 0
    never_lands: bool = False  # the chain proves it can no longer be included
