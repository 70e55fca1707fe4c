"""`bmad-app escrow rescue --chain polygon TOKEN TO`: tokens sent to the escrow contract outside `fund`
(a client's plain transfer, an airdrop) go to an address the operator names. The contract sends only the
excess over what its funded escrows hold, so no escrow's money can leave this way; only its arbiter can
call it. Signed with the arbiter's next nonce and recorded before it is sent, like a refund: if it is
not sent here, the worker sends it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from github_app.chains.addresses import POLYGON, InvalidAddress, evm_address
from github_app.escrow.backends import Chains
from github_app.escrow.chain_txs import record_signed
from github_app.escrow.resend import mark_confirmed, settle


class RescueRefused(Exception):
    """What the operator is told, in one sentence."""


@dataclass(frozen=True)
class RescueResult:
    token: str
    to: str
    amount: int
    tx_hash: str
    tx_url: str


async def rescue(
    runtime: Any,
    chains: Chains,
    token_text: str,
    to_text: str,
    *,
    poll_seconds: float = 1.0,
    wait_seconds: float = 600.0,
) -> RescueResult:
    try:
        to = evm_address(to_text)
        token = chains_token(chains, token_text)
    except InvalidAddress as exc:
        raise RescueRefused(str(exc)) from exc
    await chains.verify()
    backend = chains.get(POLYGON)
    if backend is None:
        raise RescueRefused(chains.problem(POLYGON) or "Polygon is not configured")
    signed = None
    try:
        excess = await backend.excess(token)
        if excess <= 0:
            raise RescueRefused(
                f"nothing to rescue: the contract holds of {token} exactly what its funded escrows hold"
            )
        unsigned = await backend.unsigned_rescue(token, to)
        chain_nonce = await backend.pending_nonce()
        async with runtime.sessionmaker() as session, session.begin():
            signed = await record_signed(session, backend, None, "rescue", unsigned, chain_nonce)
        await backend.broadcast(signed)
        deadline = time.monotonic() + wait_seconds
        while True:
            outcome = await backend.outcome(signed)
            if outcome.landed and not outcome.succeeded:
                await settle(runtime, signed.tx_hash, "reverted")
                raise RescueRefused(f"the rescue {signed.tx_hash} reverted on-chain (nothing was sent)")
            if outcome.never_lands:
                await settle(runtime, signed.tx_hash, "dropped")
                raise RescueRefused(f"the rescue {signed.tx_hash} can never land (its nonce was used): run again")
            if outcome.landed and outcome.confirmations >= backend.confirmations:
                break
            if time.monotonic() > deadline:
                raise RescueRefused(f"the rescue {signed.tx_hash} is not confirmed yet; the worker follows it")
            await asyncio.sleep(poll_seconds)
    except RescueRefused:
        raise
    except Exception as exc:  # only the type: a node's message may carry its URL (and API key)
        done = "nothing was signed" if signed is None else f"{signed.tx_hash} is recorded and the worker sends it"
        raise RescueRefused(f"rescue not done: the Polygon node failed ({type(exc).__name__}); {done}") from exc
    await mark_confirmed(runtime, backend, "rescue", None, signed.tx_hash)
    return RescueResult(token, to, excess, signed.tx_hash, backend.tx_url(signed.tx_hash))


def chains_token(chains: Chains, text: str) -> str:
    """A currency of POLYGON_TOKENS, or an EIP-55 token address."""
    backend = chains.get(POLYGON) or chains.unchecked.get(POLYGON)
    if backend is not None:
        known = backend.token_for(text.strip())
        if known is not None:
            return str(known)
    return evm_address(text)
