"""The marketplace's side of an escrow, as its services and web page do it: the Escrow row, the
expert's wallet, a story driven to DONE through signed deliveries."""

from __future__ import annotations

from typing import Any

from github_app.db.app_tables import Wallet
from github_app.db.enums import EscrowStatus
from github_app.db.models import Escrow
from github_app.db.types import new_id, utcnow
from tests.harness import App
from tests.workflow import DEV, GATE_PATH, PM, QA, STORY_PATH, Market, gate_file, story_file


async def done_story(app: App, m: Market, number: int = 3, merges: int = 1) -> str:
    """Story 1.N approved, won by DEV, developed in a PR, accepted by QA, merged: DONE. `merges` > 1
    delivers the merge that many times, each as its own delivery (GitHub may send an event twice)."""
    path = STORY_PATH.replace("1.3", f"1.{number}")
    gate = GATE_PATH.replace("1.3", f"1.{number}")
    await app.deliver("push", m.push("main", {path: story_file("Approved", number=number)}, PM))
    story_id = str(await m.scalar('SELECT id FROM "Story" WHERE "storyNumber" = :n', n=number))
    await m.accept_bid(story_id, DEV)
    sha = m.sha()
    branch = f"story/1.{number}-work"
    title = f"Story 1.{number}: work"
    await app.deliver("pull_request", m.pr("opened", number, head_sha=sha, branch=branch, title=title))
    await app.deliver("push", m.push(branch, {gate: gate_file("PASS", story=f"1.{number}")}, QA))
    merge = m.pr("closed", number, merged=True, head_sha=sha, branch=branch, title=title, sender=PM)
    for _ in range(merges):
        await app.deliver("pull_request", merge)
    assert len(app.sent) == len(set(app.sent))  # distinct deliveries, not one redelivered
    assert await m.scalar('SELECT status FROM "Story" WHERE id = :s', s=story_id) == "DONE"
    return story_id


async def create_escrow(
    m: Market,
    story_id: str,
    *,
    chain: str = "polygon",
    contract_address: str,
    amount: int,
    currency: str = "USDC",
    fee_bps: int = 500,
    expert: str = DEV,
    status: EscrowStatus = EscrowStatus.PENDING,
) -> str:
    opportunity_id = await m.scalar("SELECT opportunity_id FROM story_opportunity WHERE story_id = :s", s=story_id)
    escrow_id = new_id()
    async with m.runtime.sessionmaker() as s, s.begin():
        s.add(
            Escrow(
                id=escrow_id,
                project_id=m.project_id,
                opportunity_id=opportunity_id,
                client_id=m.users["cleo-client"],
                expert_id=m.users[expert],
                amount=str(amount),
                currency=currency,
                blockchain=chain,
                platform_fee=fee_bps,
                status=status,
                contract_address=contract_address,
            )
        )
    return escrow_id


async def set_wallet(m: Market, login: str, chain: str, address: str) -> None:
    async with m.runtime.sessionmaker() as s, s.begin():
        s.add(Wallet(user_id=m.users[login], chain=chain, address=address, updated_at=utcnow()))


async def escrow_row(m: Market, escrow_id: str) -> dict[str, Any]:
    [row] = await m.rows(
        'SELECT status, "transactionHash", "releaseTransactionHash", "fundedAt", "releasedAt" FROM "Escrow" '
        "WHERE id = :e",
        e=escrow_id,
    )
    return dict(zip(("status", "funding_tx", "release_tx", "funded_at", "released_at"), row, strict=True))
