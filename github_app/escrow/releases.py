"""The release worker: pays the expert of a DONE story exactly once.

Each request goes through short transactions, none of which waits for the chain while holding a lock
on the marketplace's shared `Escrow` row:

1. bind: the FUNDED escrow of the story's developer opportunity for the story's developer (or wait
   for funding, or fail permanently with the reason);
2. sign: under the signer's nonce row lock, sign the release and COMMIT its hash and bytes (app table)
   before anything is broadcast;
3. broadcast the recorded bytes, then wait for the configured confirmations;
4. mark: lock the Escrow row and, in one transaction, Escrow RELEASED with the hash, Opportunity
   COMPLETED, an audit row and the PR views.

The request's lease is short and renewed by the worker's heartbeat while the release is in hand, so a
release waiting for its confirmations keeps it for as long as it waits. A worker that dies anywhere
leaves its lease to run out within seconds; the next one finds the recorded transaction and asks the
chain what became of it. Nothing is signed again unless the chain proves the recorded
transaction can never land AND the escrow is still funded on-chain; and the contract itself refuses a
second release of one escrow.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.chains.addresses import CHAIN_NAMES
from github_app.chains.errors import TxRejected
from github_app.chains.transactions import SignedTx
from github_app.db.app_tables import (
    ChainTxState,
    EscrowChainState,
    EscrowChainTx,
    EscrowReleaseRequest,
    ReleaseState,
    StoryOpportunity,
)
from github_app.db.enums import EscrowStatus, OpportunityStatus
from github_app.db.models import Escrow, Opportunity
from github_app.db.queries import current_one
from github_app.db.types import utcnow
from github_app.domain.escrow import (
    ONCHAIN_FUNDED,
    ONCHAIN_NONE,
    ONCHAIN_REFUNDED,
    ONCHAIN_RELEASED,
    bind_escrow,
    parse_amount,
)
from github_app.escrow import store
from github_app.escrow.backends import Chains, keyed
from github_app.escrow.chain_txs import Fault, add_signed, live_tx, record_signed, settle_replaced, signed_of
from github_app.escrow.subjects import audit_release, refresh_release_views
from github_app.inbox.store import ERROR_MAX_CHARS
from github_app.leases import Heartbeat
from github_app.logs import SecretScrubber
from github_app.metrics import ESCROW_RELEASES
from github_app.names import worker_name

log = logging.getLogger(__name__)

# `_bind` did not read the live release transaction: `_process` reads it.
UNKNOWN = object()

RELEASED_ACTION = "escrow_released"
RELEASE_FAILED_ACTION = "escrow_release_failed"

# Fault injection points, in order: after the escrow is bound, after the signed transaction is
# committed, after it is broadcast, after it is confirmed (before the final mark).
STEPS = ("bound", "signed", "broadcast", "confirmed")


# With nothing claimed, the loop looks for due requests at least this often: requests made in this
# process wake it at once (`wake`), so the poll only catches retries falling due and requests made by
# other processes, and an idle worker does not spend its CPU asking.
IDLE_POLL_FLOOR_SECONDS = 1.0


class ChainHeads:
    """Each chain's newest block, read at most once per `max_age` seconds however many releases wait on
    it. A release asks the node about its transactions only when the head has moved, since a receipt, a
    confirmation or a used nonce only changes with a new block: sixteen releases in flight then cost one
    head read per poll instead of three calls each. Backends without `head()` are asked every poll."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._reads: dict[int, tuple[float, asyncio.Task[int]]] = {}

    async def read(self, backend: Any) -> int | None:
        if getattr(backend, "head", None) is None:
            return None
        now = time.monotonic()
        cached = self._reads.get(id(backend))
        if cached is None or now - cached[0] >= self.max_age or (cached[1].done() and cached[1].exception()):
            cached = (now, asyncio.ensure_future(backend.head()))
            self._reads[id(backend)] = cached
        return await asyncio.shield(cached[1])


class LostLease(Exception):
    """Another worker took the request over: this one stops and writes nothing."""


class Releaser:
    def __init__(
        self,
        runtime: Any,
        chains: Chains,
        *,
        name: str | None = None,
        lease_seconds: float = 10.0,
        heartbeat_seconds: float = 2.0,
        confirm_wait_seconds: float = 600.0,
        waiting_retry_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        concurrency: int = 8,
        fault: Fault | None = None,
        resend_seconds: float = 5.0,
    ) -> None:
        self.runtime = runtime
        self.chains = chains
        self.name = name or worker_name()
        self.lease_seconds = lease_seconds
        # How long one run waits for its confirmations before it hands the request back (to itself or
        # another worker, which reads the chain again); the heartbeat keeps the lease meanwhile.
        self.confirm_wait_seconds = confirm_wait_seconds
        self.heartbeat = Heartbeat(
            runtime.engine, store.renew, self.name, lease_seconds, heartbeat_seconds, "escrow release"
        )
        self.waiting_retry_seconds = waiting_retry_seconds
        self.poll_seconds = poll_seconds
        self.concurrency = 1 if runtime.is_sqlite else concurrency
        self.fault = fault
        self.resend_seconds = resend_seconds
        self._lock = not runtime.is_sqlite
        self._stopping = False
        # RPC URLs carry API keys, and a node's errors quote them: none reaches last_error or a log.
        self._redact = SecretScrubber(runtime.settings.secret_values()).scrub
        self._wake = asyncio.Event()
        self.heads = ChainHeads(poll_seconds / 2)

    def wake(self) -> None:
        """A story became DONE in this process: its release request is due now."""
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due and process it; the number of requests claimed."""
        await self.chains.verify()
        async with self.runtime.engine.begin() as conn:
            claimed = await store.claim(conn, self.name, self.concurrency, self.lease_seconds, skip_locked=self._lock)
        if claimed:
            self.heartbeat.hold(*(c.id for c in claimed))
            await asyncio.gather(*(self.process(c.id) for c in claimed))
        return len(claimed)

    async def resend(self) -> None:
        """Recorded refunds and rescues not settled yet: sent again, marked once they land."""
        from github_app.escrow.resend import resend_unsent

        try:
            await resend_unsent(self.runtime, self.chains)
        except Exception as exc:  # the database or a node is down for now: the next pass tries again
            log.error("resending recorded transactions failed", extra={"error": type(exc).__name__})

    async def run_until_idle(self, limit: int = 1000) -> None:
        try:
            await self.resend()
            for _ in range(limit):
                if await self.run_once() == 0:
                    break
            await self.resend()
        finally:
            await self.heartbeat.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: keep up to `concurrency` releases in flight, claiming as slots free up (a
        release waiting for its confirmations does not hold up the others)."""
        inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        stop_waiter = asyncio.create_task(stop.wait())
        next_resend = time.monotonic()
        try:
            while not stop.is_set():
                if time.monotonic() >= next_resend:
                    await self.resend()
                    next_resend = time.monotonic() + self.resend_seconds
                free = self.concurrency - len(inflight)
                claimed = []
                try:
                    await self.chains.verify()  # once per chain; again only while a node is unreachable
                except Exception as exc:
                    log.error("escrow chain check failed", extra={"error": type(exc).__name__})
                if free > 0:
                    try:
                        async with self.runtime.engine.begin() as conn:
                            claimed = await store.claim(
                                conn, self.name, free, self.lease_seconds, skip_locked=self._lock
                            )
                    except Exception as exc:  # the database may be down for a while; keep trying
                        log.error("escrow releaser cannot claim", extra={"error": repr(exc)})
                self.heartbeat.hold(*(c.id for c in claimed))
                for c in claimed:
                    inflight.add(asyncio.create_task(self.process(c.id), name=f"release-{c.id}"))
                if not claimed or len(inflight) >= self.concurrency:
                    # Nothing more is due: wait for a wake (a story became DONE here), a release in flight
                    # to finish (a slot frees, or it put its request back), or the idle poll, which finds
                    # requests made by other processes and retries whose delay has passed. Polling at
                    # `poll_seconds` while releases are in flight would claim nothing hundreds of times.
                    waiter = asyncio.create_task(self._wake.wait())
                    try:
                        await asyncio.wait(
                            {*inflight, stop_waiter, waiter},
                            timeout=max(self.poll_seconds, IDLE_POLL_FLOOR_SECONDS),
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        waiter.cancel()
                        self._wake.clear()
                    inflight = {t for t in inflight if not t.done()}
        finally:
            stop_waiter.cancel()
            # A release waiting for its confirmations hands its request back instead of holding up the
            # shutdown; the next worker reads the chain and finishes it.
            self._stopping = True
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            await self.heartbeat.close()

    def _step(self, step: str, request_id: str) -> None:
        if self.fault is not None:
            self.fault(step, request_id)

    # --- one request ------------------------------------------------------------------------

    async def process(self, request_id: str) -> None:
        try:
            await self._process_held(request_id)
        finally:
            self.heartbeat.drop(request_id)

    async def _process_held(self, request_id: str) -> None:
        try:
            await self._process(request_id)
            sender = self.runtime.outbox_sender
            if sender is not None:  # the PR's views may have changed
                sender.wake()
        except LostLease:
            ESCROW_RELEASES.labels("unknown", "lost_lease").inc()
            log.warning("escrow release lease lost; another worker has it", extra={"request": request_id})
        except Exception as exc:
            # A transient problem (node unreachable, database hiccup): keep the request, retry soon.
            detail = self._redact("".join(traceback.format_exception_only(type(exc), exc)).strip())[:ERROR_MAX_CHARS]
            log.warning("escrow release attempt failed; will retry", extra={"request": request_id, "error": detail})
            ESCROW_RELEASES.labels("unknown", "retry").inc()
            try:
                async with self.runtime.sessionmaker() as session, session.begin():
                    request = await store.hold(session, request_id, self.name, lock=self._lock)
                    if request is not None:
                        request.last_error = detail
                        delay = min(300.0, self.poll_seconds * 2 ** min(request.attempts, 8))
                        store.put_back(request, utcnow() + timedelta(seconds=delay))
            except Exception:  # the lease expires and the request comes back: nothing is lost
                log.exception("cannot record escrow release failure")

    async def _process(self, request_id: str) -> None:
        # 1. bind, and find what is already recorded
        async with self.runtime.sessionmaker() as session, session.begin():
            request = await self._hold(session, request_id)
            if request.state not in ReleaseState.DUE:
                return
            escrow, recorded = await self._bind(session, request)
            if escrow is None:
                return
            backend = self.chains.get(escrow.blockchain)
            if backend is None:
                await self._wait(session, request, self.chains.problem(escrow.blockchain) or "chain not configured")
                return
            tx_hash = escrow.release_transaction_hash if escrow.status == EscrowStatus.RELEASED else None
            client, watch_from = await store.funder_of(session, escrow.id, escrow.client_id, escrow.blockchain)
            key = keyed(backend, client=client)
            if recorded is UNKNOWN:
                recorded = await live_tx(session, escrow.id, "release")
            signed = signed_of(recorded) if isinstance(recorded, EscrowChainTx) else None
            wallet, client_wallet = await store.wallets_of(
                session, escrow.blockchain, request.expert_id, escrow.client_id
            )
            if tx_hash is None and signed is None:
                # Nothing in flight: the checks before a payment is signed. (A recorded transaction is
                # always reconciled with the chain first, whatever changed since.)
                chain_state = await session.get(EscrowChainState, escrow.id)
                if chain_state is not None and chain_state.refund_requested_at is not None:
                    await self._fail(session, request, "an operator is refunding this escrow to the client")
                    return
                if wallet is None:
                    await self._fail(
                        session,
                        request,
                        f"the expert has no {CHAIN_NAMES.get(escrow.blockchain, escrow.blockchain)} wallet: "
                        f"set one with `bmad-app wallet set`, then `bmad-app escrow retry {escrow.id}`",
                    )
                    return
                if key and client is None:
                    await self._fail(
                        session,
                        request,
                        f"the client has no {CHAIN_NAMES.get(escrow.blockchain, escrow.blockchain)} wallet and no "
                        "funder is recorded: the escrow's on-chain id cannot be known; an operator decides",
                    )
                    return
            escrow_id, expert_wallet = escrow.id, wallet.address if wallet else ""
            client_address = client_wallet.address if client_wallet else None
            amount, fee_bps, currency = escrow.amount, escrow.platform_fee, escrow.currency
        self._step("bound", request_id)
        if tx_hash is not None:  # marked by an earlier run that died before closing the request
            await self._mark(request_id, escrow_id, tx_hash, backend)
            return

        fresh = signed is None
        if signed is None:
            signed = await self._sign(
                request_id,
                escrow_id,
                expert_wallet,
                amount,
                fee_bps,
                currency,
                backend,
                key,
                watch_from,
                client_address,
            )
            if signed is None:
                return
            self._step("signed", request_id)
        try:
            if not await self._broadcast(request_id, signed, backend):
                return
        except Exception as exc:
            if fresh:
                raise
            # Sent before: the chain may have it, or have mined another at its nonce (a replacement, or
            # the transaction it replaced). Reconcile with the chain instead of retrying the send.
            log.warning("re-broadcast refused; reconciling", extra={"tx": signed.tx_hash, "error": type(exc).__name__})
        self._step("broadcast", request_id)
        landed = await self._confirm(request_id, escrow_id, currency, signed, backend, key, fresh=fresh)
        if landed is None:
            return
        self._step("confirmed", request_id)
        await self._mark(request_id, escrow_id, landed.tx_hash, backend)

    async def _hold(self, session: AsyncSession, request_id: str) -> EscrowReleaseRequest:
        request = await store.hold(session, request_id, self.name, lock=self._lock)
        if request is None:
            raise LostLease(request_id)
        return request

    async def _bind(
        self, session: AsyncSession, request: EscrowReleaseRequest
    ) -> tuple[Escrow | None, EscrowChainTx | None | object]:
        """The escrow this release pays (None: it failed or waits, and says so), and its live release
        transaction when that was read on the way (else UNKNOWN)."""
        recorded: EscrowChainTx | None | object = UNKNOWN
        if request.escrow_id is not None:
            if request.state != ReleaseState.RELEASING:
                recorded = await live_tx(session, request.escrow_id, "release")
            if request.state == ReleaseState.RELEASING or recorded is not None:
                bound = await session.get(Escrow, request.escrow_id)
                if bound is None:
                    await self._fail(session, request, f"escrow {request.escrow_id} no longer exists")
                return bound, recorded
            # An escrow named before anything was signed (e.g. at DONE) is only a hint: the binding
            # rules are applied now, when the release runs. (Not written yet: the binding below may name
            # the same escrow, and an unchanged row costs no UPDATE.)
        hint = request.escrow_id
        opportunity_id = (
            request.opportunity_id
            or (
                await session.execute(
                    select(StoryOpportunity.opportunity_id).where(StoryOpportunity.story_id == request.story_id)
                )
            ).scalar()
        )
        escrows: dict[str, Escrow] = {}
        if opportunity_id is not None and request.expert_id:
            stmt = select(Escrow).where(Escrow.opportunity_id == opportunity_id, Escrow.expert_id == request.expert_id)
            escrows = {e.id: e for e in (await session.execute(stmt)).scalars()}
        funded = [i for i, e in escrows.items() if e.status == EscrowStatus.FUNDED]
        pending = [i for i, e in escrows.items() if e.status == EscrowStatus.PENDING]
        binding = bind_escrow(request.expert_id, opportunity_id, funded, pending)
        if binding.failure is not None or binding.escrow_id is None:
            request.escrow_id = None
            if binding.failure is not None:
                await self._fail(session, request, binding.failure)
            else:
                await self._wait(session, request, binding.waiting_for or "waiting for funding")
            return None, recorded
        taken = (
            await session.execute(
                select(func.coalesce(EscrowReleaseRequest.story_id, EscrowReleaseRequest.opportunity_id)).where(
                    EscrowReleaseRequest.escrow_id == binding.escrow_id, EscrowReleaseRequest.id != request.id
                )
            )
        ).scalar()
        if taken is not None:
            request.escrow_id = None
            await self._fail(session, request, f"escrow {binding.escrow_id} already pays story or stage {taken}")
            return None, recorded
        request.escrow_id = binding.escrow_id
        request.opportunity_id = opportunity_id
        # The live transaction read above was of the hint: the same escrow's, or to be read again.
        return escrows[binding.escrow_id], recorded if hint == binding.escrow_id else UNKNOWN

    async def _sign(
        self,
        request_id: str,
        escrow_id: str,
        expert_wallet: str,
        amount_text: str,
        fee_bps: int,
        currency: str,
        backend: Any,
        key: dict[str, Any],
        watch_from: int | None,
        client_address: str | None = None,
    ) -> SignedTx | None:
        """Read the chain, then sign and commit the transaction; None when there is nothing to sign."""
        onchain = await backend.read(escrow_id, currency, **key)
        if onchain.status == ONCHAIN_RELEASED:
            # Released on-chain by a transaction we have no live record of (e.g. an operator by hand).
            found = await backend.find_transaction("release", escrow_id, **key, **keyed(backend, from_block=watch_from))
            if found is None:
                raise RuntimeError("escrow is released on-chain but its transaction was not found yet")
            # Counted as paid at the configured confirmations, as the app's own releases are.
            seen = await backend.outcome(SignedTx(tx_hash=found, raw=b"", signer=""))
            if not (seen.landed and seen.succeeded and seen.confirmations >= backend.confirmations):
                await self._reschedule(request_id, self.poll_seconds)
                return None
            await self._mark(request_id, escrow_id, found, backend)
            return None
        problem = None
        row_amount = parse_amount(amount_text) or 0
        if onchain.status == ONCHAIN_REFUNDED:
            problem = "the escrow was refunded on-chain: nothing to release"
        elif onchain.status == ONCHAIN_NONE and onchain.custodial:
            # A Solana account keeps no status once closed: a release or refund sent outside this app
            # looks like an escrow that was never funded. Never guessed: an operator looks it up.
            problem = (
                f"the escrow is not funded on-chain (its account is empty or closed; a transaction with memo "
                f"escrow-release:{escrow_id} or escrow-refund:{escrow_id} from the authority would explain it): "
                "an operator decides"
            )
        elif onchain.status == ONCHAIN_NONE:
            problem = "the escrow is not funded on-chain"
        elif onchain.status != ONCHAIN_FUNDED:
            problem = f"unknown on-chain escrow status {onchain.status}"
        elif onchain.custodial and (parse_amount(amount_text) is None or onchain.amount < row_amount):
            problem = (
                f"the escrow account holds {onchain.amount}, less than the row's {amount_text}: an operator decides"
            )
        elif onchain.custodial and onchain.amount > row_amount and client_address is None:
            # The excess goes back to the client in the release itself; the chain does not say who they are.
            problem = (
                f"the escrow account holds {onchain.amount}, more than the row's {amount_text}, and the excess goes "
                f"back to the client, who has no {CHAIN_NAMES.get(backend.chain, backend.chain)} wallet: set one "
                f"with `bmad-app wallet set`, then `bmad-app escrow retry {escrow_id}`"
            )
        elif not onchain.custodial and (onchain.expert or "").lower() != expert_wallet.lower():
            problem = (
                f"the escrow pays {onchain.expert} on-chain but the expert's wallet is now {expert_wallet}: "
                "an operator decides (refund, or restore the wallet and retry)"
            )
        if problem is not None:
            await self._fail_by_id(request_id, problem)
            return None
        if onchain.custodial:  # Solana: no nonce; the signature's blockhash bounds its life
            # The row's amount is split; whatever else the account holds goes back to the client.
            prepared = await backend.build_release(
                escrow_id, expert_wallet, row_amount, fee_bps, currency, client=client_address
            )
        else:
            unsigned, chain_nonce = await asyncio.gather(
                backend.unsigned("release", escrow_id, **key), backend.pending_nonce()
            )
        async with self.runtime.sessionmaker() as session, session.begin():
            request = await self._hold(session, request_id)
            # A refund requested since the checks above wins: nothing is recorded, so nothing is sent.
            chain_state = await store.lock_escrow_state(session, escrow_id, lock=self._lock)
            if chain_state.refund_requested_at is not None:
                await self._fail(session, request, "an operator is refunding this escrow to the client")
                return None
            if onchain.custodial:
                signed = prepared
                add_signed(session, backend, escrow_id, "release", signed)
            else:
                signed = await record_signed(session, backend, escrow_id, "release", unsigned, chain_nonce)
            request.state = ReleaseState.RELEASING
            request.tx_url = backend.tx_url(signed.tx_hash)
            request.waiting_for = None
            request.last_error = None
            subject = (request.story_id, request.opportunity_id)
        # Outside the transaction that holds the signer's nonce lock: other releases sign meanwhile.
        async with self.runtime.sessionmaker() as session, session.begin():
            await refresh_release_views(session, *subject)
        return signed

    async def _confirm(
        self,
        request_id: str,
        escrow_id: str,
        currency: str,
        signed: SignedTx,
        backend: Any,
        key: dict[str, Any],
        *,
        fresh: bool = False,
    ) -> SignedTx | None:
        """Wait (the heartbeat keeping the lease) until one of the recorded transactions at this nonce (the release and
        any replacements) has its confirmations; that one is the payment. None when this run stops here:
        rescheduled, dropped (the next run reads the chain and signs again only if the escrow is still
        funded there) or failed. A release not mined within the backend's `replace_after` seconds is
        replaced at its nonce with a higher fee (every hash recorded first)."""
        deadline = time.monotonic() + self.confirm_wait_seconds
        rebroadcast = time.monotonic() + 10 * self.poll_seconds
        # Signed by this run at a nonce just allocated: nothing else is recorded at it yet.
        candidates = [(signed, utcnow())] if fresh else await self._candidates(escrow_id, signed)
        replace_after = getattr(backend, "replace_after", None)
        read_at: int | None = None
        outcomes: list[tuple[SignedTx, Any]] = []
        while True:
            head = await self.heads.read(backend)
            if head is None or head != read_at or len(outcomes) != len(candidates):
                outcomes = [(tx, await backend.outcome(tx)) for tx, _ in candidates]
                read_at = head
            landed = [(tx, o) for tx, o in outcomes if o.landed]
            if landed:
                tx, outcome = landed[0]  # one nonce: at most one of them is ever mined
                if outcome.succeeded and outcome.confirmations >= backend.confirmations:
                    return tx
                if not outcome.succeeded:
                    await self._settle_tx(request_id, [tx], ChainTxState.REVERTED, put_back=False)
                    onchain = await backend.read(escrow_id, currency, **key)
                    if onchain.status == ONCHAIN_RELEASED:
                        # Another recorded transaction paid it; the next run finds which.
                        await self._reschedule(request_id, 0)
                        return None
                    await self._fail_by_id(
                        request_id,
                        f"the release transaction {tx.tx_hash} reverted on-chain (escrow status {onchain.status})",
                    )
                    return None
            elif all(o.never_lands for _, o in outcomes):
                await self._settle_tx(request_id, [tx for tx, _ in candidates], ChainTxState.DROPPED)
                return None
            elif replace_after is not None and (utcnow() - candidates[-1][1]).total_seconds() >= replace_after:
                newest = await self._replace(request_id, escrow_id, candidates[-1][0], backend)
                self._step("replaced", request_id)
                candidates.append((newest, utcnow()))
                try:
                    await backend.broadcast(newest)
                except Exception as exc:  # e.g. "underpriced": the next replacement pays more again
                    log.warning("replacement refused", extra={"tx": newest.tx_hash, "error": type(exc).__name__})
                rebroadcast = time.monotonic() + 10 * self.poll_seconds
            if time.monotonic() > deadline or self._stopping:
                await self._reschedule(request_id, 0 if self._stopping else self.poll_seconds)
                return None
            if not landed and time.monotonic() > rebroadcast:
                # The same bytes of the newest: a node that lost it gets it again.
                if not await self._broadcast(request_id, candidates[-1][0], backend):
                    return None
                rebroadcast = time.monotonic() + 10 * self.poll_seconds
            await asyncio.sleep(self.poll_seconds if not landed else self.poll_seconds / 2)

    async def _candidates(self, escrow_id: str, signed: SignedTx) -> list[tuple[SignedTx, Any]]:
        """The recorded, unsettled release transactions that may pay this escrow, oldest first, with the
        time each was recorded: the signed one and, at its nonce, its replacements."""
        async with self.runtime.sessionmaker() as session:
            stmt = select(EscrowChainTx).where(
                EscrowChainTx.escrow_id == escrow_id,
                EscrowChainTx.kind == "release",
                EscrowChainTx.state.in_((ChainTxState.SIGNED, ChainTxState.CONFIRMED)),
            )
            if signed.nonce is None:
                stmt = stmt.where(EscrowChainTx.tx_hash == signed.tx_hash)
            else:
                stmt = stmt.where(EscrowChainTx.nonce == signed.nonce, EscrowChainTx.signer == signed.signer)
            rows = (await session.execute(stmt.order_by(EscrowChainTx.created_at))).scalars().all()
            found = [(signed_of(r), r.created_at) for r in rows]
        if not any(tx.tx_hash == signed.tx_hash for tx, _ in found):
            found.append((signed, utcnow()))
        return found

    async def _replace(self, request_id: str, escrow_id: str, stuck: SignedTx, backend: Any) -> SignedTx:
        """Sign the replacement of a stuck release and commit it (with what it replaces) before it is sent."""
        newer: SignedTx = await backend.replacement(stuck)
        async with self.runtime.sessionmaker() as session, session.begin():
            request = await self._hold(session, request_id)
            add_signed(session, backend, escrow_id, "release", newer, replaces=stuck.tx_hash)
            request.tx_url = backend.tx_url(newer.tx_hash)
        ESCROW_RELEASES.labels(backend.chain, "replaced").inc()
        log.warning(
            "escrow release not mined in time; replaced with a higher fee",
            extra={"escrow": escrow_id, "tx": newer.tx_hash, "replaces": stuck.tx_hash},
        )
        return newer

    async def _broadcast(self, request_id: str, signed: SignedTx, backend: Any) -> bool:
        """Send the recorded bytes; False when the node refused them before sending (its simulation
        failed): the transaction is settled as never sent, with the node's error, and the release fails
        with it instead of waiting for the transaction to expire and signing it again, and again."""
        try:
            await backend.broadcast(signed)
        except TxRejected as exc:
            error = self._redact(str(exc))[:ERROR_MAX_CHARS]
            async with self.runtime.sessionmaker() as session, session.begin():
                request = await self._hold(session, request_id)
                await session.execute(
                    update(EscrowChainTx)
                    .where(EscrowChainTx.tx_hash == signed.tx_hash)
                    .values(state=ChainTxState.DROPPED, error=error)
                )
                reason = f"the node refused the release transaction {signed.tx_hash}: {error}"
                await self._fail(session, request, reason)
            return False
        return True

    async def _mark(self, request_id: str, escrow_id: str, tx_hash: str, backend: Any) -> None:
        async with self.runtime.sessionmaker() as session, session.begin():
            request = await self._hold(session, request_id)
            # The only lock on the shared row, and only for this short write.
            stmt = select(Escrow).where(Escrow.id == escrow_id)
            if self._lock:
                stmt = stmt.with_for_update()
            escrow = await current_one(session, stmt)
            now = utcnow()
            if escrow.status != EscrowStatus.RELEASED:
                escrow.status = EscrowStatus.RELEASED
                escrow.release_transaction_hash = tx_hash
                escrow.released_at = now
            if escrow.opportunity_id is not None:
                await session.execute(
                    update(Opportunity)
                    .where(Opportunity.id == escrow.opportunity_id)
                    .values(status=OpportunityStatus.COMPLETED, updated_at=now)
                )
            await session.execute(
                update(EscrowChainTx)
                .where(EscrowChainTx.tx_hash == tx_hash)
                .values(state=ChainTxState.CONFIRMED, confirmed_at=now)
            )
            await settle_replaced(session, tx_hash)
            request.state = ReleaseState.RELEASED
            request.tx_url = backend.tx_url(tx_hash)
            request.released_at = now
            request.waiting_for = None
            request.last_error = None
            store.put_back(request)
            await audit_release(
                session,
                request,
                RELEASED_ACTION,
                {
                    "escrowId": escrow.id,
                    "chain": escrow.blockchain,
                    "transactionHash": tx_hash,
                    "amount": escrow.amount,
                    "currency": escrow.currency,
                    "explorerUrl": backend.tx_url(tx_hash),
                },
            )
            await session.flush()
            await refresh_release_views(session, request.story_id, request.opportunity_id)
        ESCROW_RELEASES.labels(backend.chain, "released").inc()
        log.info("escrow released", extra={"escrow": escrow_id, "tx": tx_hash, "chain": backend.chain})

    # --- outcomes ---------------------------------------------------------------------------

    async def _wait(self, session: AsyncSession, request: EscrowReleaseRequest, why: str) -> None:
        changed = request.waiting_for != why
        request.waiting_for = why
        store.put_back(request, utcnow() + timedelta(seconds=self.waiting_retry_seconds))
        ESCROW_RELEASES.labels("unknown", "waiting").inc()
        if changed:
            await session.flush()
            await refresh_release_views(session, request.story_id, request.opportunity_id)

    async def _fail(self, session: AsyncSession, request: EscrowReleaseRequest, reason: str) -> None:
        request.state = ReleaseState.FAILED
        request.last_error = reason[:ERROR_MAX_CHARS]
        request.waiting_for = None
        store.put_back(request)
        await audit_release(session, request, RELEASE_FAILED_ACTION, {"reason": reason, "escrowId": request.escrow_id})
        ESCROW_RELEASES.labels("unknown", "failed").inc()
        log.error("escrow release failed permanently", extra={"request": request.id, "reason": reason})
        await session.flush()
        await refresh_release_views(session, request.story_id, request.opportunity_id)

    async def _fail_by_id(self, request_id: str, reason: str) -> None:
        async with self.runtime.sessionmaker() as session, session.begin():
            await self._fail(session, await self._hold(session, request_id), reason)

    async def _reschedule(self, request_id: str, delay: float) -> None:
        async with self.runtime.sessionmaker() as session, session.begin():
            store.put_back(await self._hold(session, request_id), utcnow() + timedelta(seconds=delay))

    async def _settle_tx(self, request_id: str, txs: list[SignedTx], state: str, *, put_back: bool = True) -> None:
        async with self.runtime.sessionmaker() as session, session.begin():
            request = await self._hold(session, request_id)
            await session.execute(
                update(EscrowChainTx).where(EscrowChainTx.tx_hash.in_([t.tx_hash for t in txs])).values(state=state)
            )
            if put_back:
                request.state = ReleaseState.PENDING
                store.put_back(request)
