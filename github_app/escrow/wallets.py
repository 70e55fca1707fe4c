"""Users' wallets (an app table: the seed has none), validated before they are stored."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.chains.addresses import address_for
from github_app.db.app_tables import Wallet
from github_app.db.models import User
from github_app.db.types import utcnow


class WalletError(ValueError):
    pass


async def set_wallet(session: AsyncSession, email: str, chain: str, address: str) -> tuple[str, str]:
    """Store `address` as the user's wallet on `chain`; (user id, normalised address)."""
    normalised = address_for(chain, address)  # raises InvalidAddress (a ValueError) with the reason
    user_id = (await session.execute(select(User.id).where(func.lower(User.email) == email.strip().lower()))).scalar()
    if user_id is None:
        raise WalletError(f"no marketplace user with email {email!r}")
    return user_id, await store_wallet(session, user_id, chain, normalised)


async def store_wallet(session: AsyncSession, user_id: str, chain: str, address: str) -> str:
    """Validate `address` on `chain` and store it as the user's wallet there; the normalised address.
    A release already signed is not affected: its transaction names the address it pays."""
    normalised = address_for(chain, address)  # raises InvalidAddress (a ValueError) with the reason
    wallet = await session.get(Wallet, (user_id, chain))
    if wallet is None:
        session.add(Wallet(user_id=user_id, chain=chain, address=normalised, updated_at=utcnow()))
    else:
        wallet.address = normalised
        wallet.updated_at = utcnow()
    return normalised
