"""Which chains this process can sign for, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from github_app.chains.addresses import CHAIN_NAMES, POLYGON, SOLANA
from github_app.chains.evm import SignedTx, TxOutcome
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
        """The backends, with their keys read now: only a process that signs builds this."""
        import dataclasses

        from github_app.chains.keys import load_chain_keys
        from github_app.config import ConfigError

        chains = cls()
        try:
            settings = load_chain_keys(settings)
        except ConfigError as exc:  # that chain is not configured here; the other one may be
            for chain, prefix, path_field in (
                (POLYGON, "POLYGON_", "polygon_arbiter_key_path"),
                (SOLANA, "SOLANA_", "solana_authority_keypair_path"),
            ):
                mine = [p for p in exc.problems if p.startswith(prefix)]
                if mine:
                    chains.problems[chain] = f"{CHAIN_NAMES[chain]} is not configured: {'; '.join(mine)}"
                    settings = dataclasses.replace(settings, **{path_field: None})
            settings = load_chain_keys(settings)
        problem = settings.polygon_problem()
        if problem is None:
            from github_app.chains.evm import EvmChain

            chains.backends[POLYGON] = EvmChain.from_settings(settings)
        elif POLYGON not in chains.problems:
            chains.problems[POLYGON] = problem
        problem = settings.solana_problem()
        if problem is None:
            from github_app.chains import solana

            chains.backends[SOLANA] = solana.from_settings(settings)
        elif SOLANA not in chains.problems:
            chains.problems[SOLANA] = problem
        return chains
