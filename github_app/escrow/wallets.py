"""Users' wallets (an app table: the seed has none), validated before they are stored.

A payout wallet must be able to receive and spend what it is paid: on Solana a program id (an
executable account) or a token account would take tokens nobody can move; on Polygon a contract may
have no way to move a token it is sent. Where the chain's node is configured, `set_wallet` asks it and
refuses those. Where none is configured it stores the well-formed address unchecked and says so; where
one is configured but does not answer it refuses (try again later): a payout wallet is set rarely, and a
wrong one loses the expert's money for good.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.chains.addresses import POLYGON, SOLANA, address_for
from github_app.db.app_tables import Wallet
from github_app.db.models import User
from github_app.db.types import utcnow


class WalletError(ValueError):
    pass


class WalletChecker(Protocol):
    async def problem(self, chain: str, address: str) -> str | None:
        """Why `address` cannot be a payout wallet on `chain`, or None when it can."""
        ...


async def set_wallet(
    session: AsyncSession, email: str, chain: str, address: str, checker: WalletChecker | None = None
) -> tuple[str, str]:
    """Store `address` as the user's wallet on `chain`; (user id, normalised address)."""
    normalised = address_for(chain, address)  # raises InvalidAddress (a ValueError) with the reason
    user_id = (await session.execute(select(User.id).where(func.lower(User.email) == email.strip().lower()))).scalar()
    if user_id is None:
        raise WalletError(f"no marketplace user with email {email!r}")
    return user_id, await store_wallet(session, user_id, chain, normalised, checker)


async def store_wallet(
    session: AsyncSession, user_id: str, chain: str, address: str, checker: WalletChecker | None = None
) -> str:
    """Validate `address` on `chain` (and with `checker`, on the chain's node) and store it as the user's
    wallet there; the normalised address. What `bmad-app wallet set` and `/bmad wallet` both call. A
    release already signed is not affected: its transaction names the address it pays."""
    normalised = address_for(chain, address)  # raises InvalidAddress (a ValueError) with the reason
    if checker is not None:
        problem = await checker.problem(chain, normalised)
        if problem is not None:
            raise WalletError(problem)
    wallet = await session.get(Wallet, (user_id, chain))
    if wallet is None:
        session.add(Wallet(user_id=user_id, chain=chain, address=normalised, updated_at=utcnow()))
    else:
        wallet.address = normalised
        wallet.updated_at = utcnow()
    return normalised


def solana_wallet_problem(address: str, info: Any | None) -> str | None:
    """From the account at `address` (None: no account yet, a fresh wallet is fine)."""
    from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

    if info is None:
        return None
    if info.executable:
        return f"{address} is a program (an executable account), not a wallet: give the wallet's own address"
    if info.owner in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
        return (
            f"{address} is a token account (owned by the Token program), not a wallet: give the address of "
            "the wallet that owns it"
        )
    return None


# EIP-7702: an account that delegates to code keeps its own key; its "code" is this designator.
_DELEGATION_PREFIX = bytes.fromhex("ef0100")


def evm_wallet_problem(address: str, code: bytes) -> str | None:
    if code and not (len(code) == 23 and code.startswith(_DELEGATION_PREFIX)):
        return f"{address} is a contract, not a wallet: give an externally owned account's address"
    return None


class NodeWalletChecker:
    """Asks the configured nodes, read-only: no key is needed to check a wallet."""

    def __init__(self, settings: Any, *, solana_transport: Any | None = None, w3: Any | None = None) -> None:
        self.settings = settings
        self.solana_transport = solana_transport
        self.w3 = w3
        self.unchecked: list[str] = []  # chains without a node here: stored on their form alone

    async def problem(self, chain: str, address: str) -> str | None:
        try:
            if chain == SOLANA:
                return await self._solana(address)
            if chain == POLYGON:
                return await self._polygon(address)
        except Exception as exc:  # the node is down or refuses: never store an unchecked payout wallet
            from github_app.logs import SecretScrubber

            reason = SecretScrubber(self.settings.secret_values()).scrub(f"{type(exc).__name__}: {exc}")[:200]
            return f"cannot check {address} on {chain} (the node did not answer: {reason}): try again later"
        return None

    async def _solana(self, address: str) -> str | None:
        from solders.pubkey import Pubkey

        transport = self.solana_transport
        if transport is None:
            if not self.settings.solana_rpc_url:
                self.unchecked.append(SOLANA)
                return None
            from github_app.chains.solana import RpcTransport

            transport = RpcTransport(self.settings.solana_rpc_url, self.settings.solana_commitment)
            try:
                return solana_wallet_problem(address, await transport.get_account(Pubkey.from_string(address)))
            finally:
                await transport.close()
        return solana_wallet_problem(address, await transport.get_account(Pubkey.from_string(address)))

    async def _polygon(self, address: str) -> str | None:
        w3 = self.w3
        if w3 is None:
            if not self.settings.polygon_rpc_url:
                self.unchecked.append(POLYGON)
                return None
            from github_app.chains.rpc_http import node_web3

            w3 = node_web3(self.settings.polygon_rpc_url)
            try:
                return evm_wallet_problem(address, bytes(await w3.eth.get_code(address)))  # type: ignore[arg-type]
            finally:
                await w3.provider.disconnect()
        return evm_wallet_problem(address, bytes(await w3.eth.get_code(address)))  # type: ignore[arg-type]
