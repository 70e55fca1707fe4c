"""The refunds clients ask for with `/bmad refund`, carried out with the operator's `refund()`.

The command already passed the refund guard in its own transaction (the escrow is held: the release
worker refuses it from then on). Signing, sending and waiting for the chain happen here, outside any
webhook delivery, one request at a time under a lease; `refund()` itself records a signed transaction
before sending it and asks the chain after a crash, so a request run twice never refunds twice. What
became of the refund is added to the command's reply.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from github_app.commands.registry import Outcome
from github_app.db.app_tables import RefundRequest
from github_app.db.types import utcnow
from github_app.escrow.backends import Chains
from github_app.escrow.refunds import RefundRefused, refund
from github_app.inbox.store import retry_delay
from github_app.services.commands import follow_up

log = logging.getLogger(__name__)

T = RefundRequest
MAX_ATTEMPTS = 8
# `refund()` says "run again" when the chain has not settled yet: that is waiting, not failing.
RUN_AGAIN = "run again"


class RequestedRefunds:
    def __init__(
        self,
        runtime: Any,
        chains: Chains,
        *,
        poll_seconds: float = 5.0,
        retry_base_seconds: float = 30.0,
        wait_seconds: float = 600.0,
        chain_poll_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.chains = chains
        self.poll_seconds = poll_seconds
        self.retry_base_seconds = retry_base_seconds
        self.wait_seconds = wait_seconds
        self.chain_poll_seconds = chain_poll_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                worked = await self.step()
            except Exception as exc:  # the database may be away for a while
                log.error("requested refunds: step failed", extra={"error": repr(exc)})
                worked = False
            if not worked:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass

    async def run_until_idle(self) -> None:
        while await self.step():
            pass

    async def _claim(self) -> RefundRequest | None:
        now = utcnow()
        due = select(T.escrow_id).where(T.state == "pending", T.next_attempt_at <= now).order_by(T.next_attempt_at)
        if not self.runtime.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        # Leased for as long as one attempt may take: another process leaves it alone meanwhile.
        lease = now + timedelta(seconds=self.wait_seconds + 120)
        async with self.runtime.sessionmaker() as session, session.begin():
            escrow_id = (await session.execute(due.limit(1))).scalar()
            if escrow_id is None:
                return None
            await session.execute(update(T).where(T.escrow_id == escrow_id).values(next_attempt_at=lease))
            request = await session.get(T, escrow_id)
            assert request is not None
            session.expunge(request)
            return request

    async def step(self) -> bool:
        request = await self._claim()
        if request is None:
            return False
        fields = {"escrow_id": request.escrow_id, "attempt": request.attempts + 1}
        try:
            result = await refund(
                self.runtime,
                self.chains,
                request.escrow_id,
                poll_seconds=self.chain_poll_seconds,
                wait_seconds=self.wait_seconds,
            )
        except RefundRefused as exc:
            reason = str(exc)
            if RUN_AGAIN in reason and request.attempts + 1 < MAX_ATTEMPTS:
                await self._later(request, reason)
            else:
                log.warning("requested refund refused", extra={**fields, "reason": reason})
                text = (
                    f"the refund of escrow `{request.escrow_id}` did not go through: {reason}. The escrow stays "
                    "held for the refund (it is never released); an operator can run `bmad-app escrow refund "
                    f"{request.escrow_id}` once the cause is fixed."
                )
                await self._finish(request, "failed", reason, None, text, Outcome.REFUSED)
            return True
        except Exception as exc:  # a node or the database away: the request is tried again later
            log.warning("requested refund failed; will retry", extra={**fields, "error": repr(exc)})
            await self._later(request, repr(exc))
            return True
        text = f"escrow `{result.escrow_id}` refunded: [transaction]({result.tx_url})"
        await self._finish(request, "refunded", None, result.tx_url, text, Outcome.APPLIED)
        return True

    async def _later(self, request: RefundRequest, error: str) -> None:
        delay = retry_delay(request.attempts + 1, self.retry_base_seconds)
        async with self.runtime.sessionmaker() as session, session.begin():
            await session.execute(
                update(T)
                .where(T.escrow_id == request.escrow_id)
                .values(
                    attempts=T.attempts + 1,
                    last_error=error[-2000:],
                    next_attempt_at=utcnow() + timedelta(seconds=delay),
                    updated_at=utcnow(),
                )
            )

    async def _finish(
        self, request: RefundRequest, state: str, error: str | None, tx_url: str | None, text: str, outcome: Outcome
    ) -> None:
        async with self.runtime.sessionmaker() as session, session.begin():
            await session.execute(
                update(T)
                .where(T.escrow_id == request.escrow_id)
                .values(state=state, last_error=error, tx_url=tx_url, updated_at=utcnow())
            )
            await follow_up(
                session,
                installation_id=request.installation_id,
                repository=request.repository,
                issue_number=request.issue_number,
                comment_id=request.comment_id,
                text=text,
                outcome=outcome,
            )
