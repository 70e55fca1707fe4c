"""Which chains this process can sign for, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from github_app.chains.addresses import CHAIN_NAMES, POLYGON, SOLANA
from github_app.chains.transactions import SignedTx, TxOutcome
from github_app.domain.escrow import OnChainEscrow


class ChainBackend(Protocol):
    chain: str

    def tx_url(self, tx_hash: str) -> str: ...
    def token_for(self, currency: str) -> str | None: ...
    async def read(self, escrow_row_id: str) -> OnChainEscrow: ...
    async def broadcast(self, tx: SignedTx) -> None: ...
    async def outcome(self, tx: SignedTx) -> TxOutcome: ...
    async def find_transaction(self, kind: str, escrow_row_id: str) -> str | None: ...


@dataclass
class Chains:
    """The configured backends; a chain without one says why (on the check run and in `escrow list`)."""

    backends: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def get(self, chain: str) -> Any | None:
        return self.backends.get(chain)

    def problem(self, chain: str) -> str | None:
        if chain in self.backends:
            return None
        if chain in self.problems:
            return self.problems[chain]
        return f"{CHAIN_NAMES.get(chain, chain)} is not configured"

    async def close(self) -> None:
        for backend in self.backends.values():
            close = getattr(backend, "close", None)
            if close is not None:
                await close()

    @classmethod
    def from_settings(cls, settings: Any) -> Chains:
        chains = cls()
        problem = settings.polygon_problem()
        if problem is None:
            from github_app.chains.evm import EvmChain

            chains.backends[POLYGON] = EvmChain.from_settings(settings)
        else:
            chains.problems[POLYGON] = problem
        problem = settings.solana_problem()
        if problem is None:
            from github_app.chains import solana

            chains.backends[SOLANA] = solana.from_settings(settings)
        else:
            chains.problems[SOLANA] = problem
        return chains
