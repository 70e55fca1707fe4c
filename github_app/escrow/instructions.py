"""How a client funds a PENDING escrow, in words: for `/bmad escrow` on the PR and `bmad-app escrow show`
alike, from the one derivation of a Polygon escrow's funding (`chains.addresses.evm_funding`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from github_app.chains.addresses import POLYGON, evm_funding
from github_app.config import Settings
from github_app.db.app_tables import Wallet
from github_app.db.models import Escrow
from github_app.domain.escrow import parse_amount


async def funding_instructions(session: AsyncSession, settings: Settings, row: Escrow) -> str:
    """How the client funds a PENDING escrow, from the one derivation of it (`chains.addresses.evm_funding`):
    the escrow id depends on the funding wallet, so the client's own Polygon wallet must be known."""
    if row.blockchain != POLYGON:
        return (
            f"To fund it, the client transfers {row.amount} {row.currency} to the escrow account the "
            "marketplace shows for it; the app sees the funding on its next check."
        )
    expert = await session.get(Wallet, (row.expert_id, row.blockchain))
    client = await session.get(Wallet, (row.client_id, row.blockchain))
    token = dict(settings.polygon_tokens).get(row.currency.upper())
    missing = [
        what
        for what, value in (
            ("POLYGON_ESCROW_CONTRACT (the operator's)", settings.polygon_escrow_contract),
            (f"a POLYGON_TOKENS entry for {row.currency} (the operator's)", token),
            ("the client's Polygon wallet (`/bmad wallet polygon 0x...`, by the client)", client),
            ("the developer's Polygon wallet (`/bmad wallet polygon 0x...`, by the developer)", expert),
        )
        if not value
    ]
    amount = parse_amount(row.amount)
    if amount is None:
        missing.append(f"a valid amount (the escrow says {row.amount[:40]!r})")
    if missing:
        return "It cannot be funded yet; missing: " + "; ".join(missing) + "."
    assert client is not None and expert is not None and token and settings.polygon_escrow_contract and amount
    try:
        funding = evm_funding(
            row.id,
            contract=settings.polygon_escrow_contract,
            client=client.address,
            expert=expert.address,
            token=token,
            amount=amount,
            fee_bps=row.platform_fee,
        )
    except ValueError as exc:  # InvalidAddress too
        return f"It cannot be funded as recorded: {exc}"
    return "\n".join(
        [
            f"To fund it, from the client's wallet `{funding.client}` on Polygon:",
            "",
            f"- contract: `{funding.contract}`",
            f"- escrow id (bytes32): `0x{funding.escrow_id.hex()}`",
            f"- token: `{funding.token}` ({row.currency})",
            f"- amount: `{funding.amount}` (base units)",
            f"- fee: `{funding.fee_bps}` basis points",
            "",
            f"1. `{funding.approve_call}`",
            f"2. `{funding.fund_call}`",
            "",
            "Funding from any other address is not this escrow and is never accepted.",
        ]
    )
