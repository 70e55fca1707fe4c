"""Escrow rules with no I/O: the fee split, funding checks and which escrow pays a DONE story."""

from __future__ import annotations

from dataclasses import dataclass

MAX_FEE_BPS = 10_000
UINT256_MAX = 2**256 - 1
U64_MAX = 2**64 - 1

# On-chain status of an EVM escrow (the contract's uint8), and of a Solana escrow account.
ONCHAIN_NONE = 0
ONCHAIN_FUNDED = 1
ONCHAIN_RELEASED = 2
ONCHAIN_REFUNDED = 3


def fee_split(amount: int, fee_bps: int) -> tuple[int, int]:
    """(expert's share, treasury's fee): the fee is amount * bps / 10000 rounded down, as the contract
    computes it."""
    if amount < 0 or not 0 <= fee_bps <= MAX_FEE_BPS:
        raise ValueError("amount must be >= 0 and the fee between 0 and 10000 basis points")
    fee = amount * fee_bps // MAX_FEE_BPS
    return amount - fee, fee


@dataclass(frozen=True)
class OnChainEscrow:
    """What the chain holds for one escrow."""

    status: int
    client: str | None = None
    expert: str | None = None
    token: str | None = None
    amount: int = 0
    fee_bps: int = 0
    # Solana's escrow account is held by the app's authority: expert and fee are not on-chain, the
    # release applies the row's fee and the expert's wallet.
    custodial: bool = False
    # The block this was read at, when read at a chosen depth (Polygon funding, at its confirmations).
    block: int | None = None


@dataclass(frozen=True)
class ExpectedFunding:
    """What the marketplace's Escrow row (and the expert's wallet) say the chain must hold."""

    amount: int
    token: str
    expert: str | None
    fee_bps: int


def parse_amount(text: str) -> int | None:
    """`Escrow.amount` is a decimal string of base units (wei, lamports); None when it is not."""
    value = text.strip()
    if not value.isdigit():
        return None
    return int(value)


def funding_mismatches(expected: ExpectedFunding, actual: OnChainEscrow) -> list[str]:
    """Every way the chain differs from the row; empty when the escrow may be marked FUNDED."""
    problems = []
    if actual.amount != expected.amount:
        problems.append(f"amount on-chain {actual.amount} != {expected.amount}")
    if (
        (actual.token or "") != expected.token
        if actual.custodial
        else (actual.token or "").lower() != expected.token.lower()
    ):
        problems.append(f"token on-chain {actual.token} != {expected.token}")
    if expected.expert is None:
        problems.append("the expert has no wallet on this chain")
    elif not actual.custodial and (actual.expert or "").lower() != expected.expert.lower():
        problems.append(f"expert wallet on-chain {actual.expert} != {expected.expert}")
    if not actual.custodial and actual.fee_bps != expected.fee_bps:
        problems.append(f"fee on-chain {actual.fee_bps} bps != {expected.fee_bps} bps")
    return problems


@dataclass(frozen=True)
class Binding:
    """The escrow a DONE story's release uses, or why there is none (yet)."""

    escrow_id: str | None = None
    waiting_for: str | None = None  # not an error: try again later
    failure: str | None = None  # permanent: an operator decides


def bind_escrow(expert_id: str, opportunity_id: str | None, funded: list[str], pending: list[str]) -> Binding:
    """The FUNDED escrow of the story's developer Opportunity whose expert is the story's developer.

    `funded` and `pending` are the ids of that opportunity's escrows for that expert by status."""
    if not expert_id:
        return Binding(failure="the story has no developer (empty expert): nobody to pay")
    if opportunity_id is None:
        return Binding(failure="the story is not published to the marketplace: it has no developer opportunity")
    if len(funded) > 1:
        return Binding(
            failure=f"{len(funded)} funded escrows for this story's expert ({', '.join(sorted(funded))}): "
            "refused; an operator decides which one pays (refund the others, then `bmad-app escrow retry`)"
        )
    if len(funded) == 1:
        return Binding(escrow_id=funded[0])
    return Binding(waiting_for="waiting for funding" if pending else "waiting for funding (no escrow created yet)")
