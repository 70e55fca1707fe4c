"""Which chains this process can sign for, built once from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from github_app.chains.addresses import CHAIN_NAMES, POLYGON, SOLANA
from github_app.chains.evm import SignedTx, TxOutcome
from github_app.domain.escrow import OnChainEscrow

log = logging.getLogger(__name__)


def keyed(backend: Any, **funder: Any) -> dict[str, Any]:
    """The keyword arguments naming an escrow's funder (client address, start block, confirmed depth),
    for a backend that keys escrows by their funder (Polygon); nothing for one that does not."""
    return funder if getattr(backend, "keyed_by_funder", False) else {}


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
    # Backends whose node has not yet said which chain it serves: not used until it has.
    unchecked: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, Any] = field(default_factory=dict)
    _checked: set[str] = field(default_factory=set)

    async def verify(self) -> None:
        """Ask each backend's node which chain it serves, as `escrow deploy` does, before anything is read
        from or signed for it. A node of another chain is refused for good (its problem says so on every
        release and in `escrow list`); one that cannot be reached is asked again at the next call."""
        for chain, backend in list(self.backends.items()):
            if chain not in self._checked and getattr(backend, "check_chain", None) is not None:
                self.unchecked[chain] = self.backends.pop(chain)
        for chain, backend in list(self.unchecked.items()):
            name = CHAIN_NAMES.get(chain, chain)
            try:
                problem = await backend.check_chain()
            except Exception as exc:  # unreachable for now: asked again later
                self.problems[chain] = f"cannot ask the {name} node which chain it serves yet ({type(exc).__name__})"
                log.warning("chain id check failed; will retry", extra={"chain": chain, "error": type(exc).__name__})
                continue
            del self.unchecked[chain]
            if problem is None:
                self.problems.pop(chain, None)
                self.backends[chain] = backend
                self._checked.add(chain)
            else:
                self.problems[chain] = f"refused: {problem}"
                log.error("chain node refused", extra={"chain": chain, "problem": problem})
                self.refused[chain] = backend

    def get(self, chain: str) -> Any | None:
        return self.backends.get(chain)

    def problem(self, chain: str) -> str | None:
        if chain in self.backends:
            return None
        if chain in self.problems:
            return self.problems[chain]
        return f"{CHAIN_NAMES.get(chain, chain)} is not configured"

    async def close(self) -> None:
        for backend in [*self.backends.values(), *self.unchecked.values(), *self.refused.values()]:
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
