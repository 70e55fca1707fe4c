"""What the API shows, read from the database: visibility rules and the JSON shapes.

A user sees a project they are tied to (its client, the expert of an accepted bid on one of its
opportunities, or assigned to one of its stories: the rule bot commands use too), that project's
stories, and an escrow they are the client or the expert of. Admin keys see everything. Anything else
is "not found", exactly like an id that does not exist, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.api.keys import Principal
from github_app.db.app_tables import (
    EscrowChainTx,
    EscrowReleaseRequest,
    InboxState,
    StoryOpportunity,
    StoryState,
    WebhookDelivery,
)
from github_app.db.enums import BidStatus
from github_app.db.models import Bid, Deliverable, Escrow, Opportunity, Project, Story, StoryAuditLog, User

MAX_LIMIT = 100
MAX_CURSOR = 600
DEFAULT_LIMIT = 50
AUDIT_LOG_LIMIT = 1000


class BadRequest(ValueError):
    """A query parameter the API cannot use; the message says which and why."""


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _value(v: object) -> Any:
    return v.value if isinstance(v, Enum) else v


# --- paging ----------------------------------------------------------------------------------------


def page_args(limit: str | None, cursor: str | None) -> tuple[int, str | None]:
    if limit is None:
        n = DEFAULT_LIMIT
    else:
        try:
            n = int(limit)
        except ValueError:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}") from None
        if not 1 <= n <= MAX_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    if cursor is None:
        return n, None
    # An empty cursor is refused too: the API never hands one out, and the description says so.
    if not cursor or len(cursor) > MAX_CURSOR or len(cursor) % 2 or not all(c in "0123456789abcdef" for c in cursor):
        raise BadRequest("cursor is not one this API handed out")
    # Opaque to clients; any well-formed cursor is merely a position in id order.
    return n, bytes.fromhex(cursor).decode("utf-8", errors="replace")


def encode_cursor(last_id: str) -> str:
    return last_id.encode("utf-8").hex()


async def paged(
    session: AsyncSession,
    stmt: Select[Any] | Any,
    id_column: Any,
    limit: int,
    after: str | None,
    key: Callable[[Any], str] = lambda row: str(row[0].id),
) -> tuple[Sequence[Any], str | None]:
    """Rows after the cursor in id order, and the next cursor (None on the last page)."""
    if after is not None:
        stmt = stmt.where(id_column > after)
    rows = (await session.execute(stmt.order_by(id_column).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1])) if more else None


# --- visibility -------------------------------------------------------------------------------------


def project_visible(who: Principal) -> ColumnElement[bool]:
    if who.admin:
        return Project.id.is_not(None)
    by_bid = (
        select(Opportunity.project_id)
        .join(Bid, Opportunity.accepted_bid_id == Bid.id)
        .where(Bid.expert_id == who.user_id, Bid.status == BidStatus.ACCEPTED)
    )
    by_story = select(Story.project_id).where(
        or_(Story.assigned_dev_id == who.user_id, Story.assigned_qa_id == who.user_id)
    )
    return or_(Project.client_id == who.user_id, Project.id.in_(by_bid), Project.id.in_(by_story))


def escrow_visible(who: Principal) -> ColumnElement[bool]:
    if who.admin:
        return Escrow.id.is_not(None)
    return or_(Escrow.client_id == who.user_id, Escrow.expert_id == who.user_id)


# --- shapes -----------------------------------------------------------------------------------------


def person(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "name": user.name, "githubUsername": user.github_username}


def project_json(p: Project) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "status": _value(p.status),
        "repository": p.repo_name,
        "repositoryUrl": p.repo_url,
        "currentStage": _value(p.current_stage),
        "createdAt": iso(p.created_at),
    }


def escrow_summary(e: Escrow | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "id": e.id,
        "status": _value(e.status),
        "amount": e.amount,
        "currency": e.currency,
        "blockchain": e.blockchain,
    }


async def _users(session: AsyncSession, ids: set[str]) -> dict[str, User]:
    ids.discard("")
    if not ids:
        return {}
    rows = (await session.execute(select(User).where(User.id.in_(ids)))).scalars()
    return {u.id: u for u in rows}


async def _story_escrows(session: AsyncSession, story_ids: list[str]) -> dict[str, Escrow]:
    """Each story's escrow: the one its release bound, else the newest for its published opportunity."""
    if not story_ids:
        return {}
    bound = (
        await session.execute(
            select(EscrowReleaseRequest.story_id, Escrow)
            .join(Escrow, Escrow.id == EscrowReleaseRequest.escrow_id)
            .where(EscrowReleaseRequest.story_id.in_(story_ids))
        )
    ).all()
    found: dict[str, Escrow] = {sid: e for sid, e in bound if sid is not None}
    rest = [s for s in story_ids if s not in found]
    if rest:
        rows = (
            await session.execute(
                select(StoryOpportunity.story_id, Escrow)
                .join(Escrow, Escrow.opportunity_id == StoryOpportunity.opportunity_id)
                .where(StoryOpportunity.story_id.in_(rest))
                .order_by(Escrow.created_at)
            )
        ).all()
        for sid, e in rows:
            found[sid] = e  # the newest wins
    return found


def story_json(s: Story, state: StoryState | None, users: dict[str, User], escrow: Escrow | None) -> dict[str, Any]:
    return {
        "id": s.id,
        "projectId": s.project_id,
        "number": f"{s.epic_number}.{s.story_number}",
        "title": s.title,
        "status": _value(s.status),
        "developer": person(users.get(s.assigned_dev_id or "")),
        "qa": person(users.get(s.assigned_qa_id or "")),
        "gate": {
            "status": s.qa_gate_status,
            "accepted": bool(state.gate_accepted) if state else False,
            "reviewedAt": iso(s.qa_reviewed_at),
            "reviewCount": s.qa_review_count,
        },
        "pullRequest": {"number": s.dev_pr_number, "url": s.dev_pr_url} if s.dev_pr_number else None,
        "escrow": escrow_summary(escrow),
        "updatedAt": iso(s.updated_at),
    }


async def list_projects(
    session: AsyncSession, who: Principal, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    rows, cursor = await paged(session, select(Project).where(project_visible(who)), Project.id, limit, after)
    return [project_json(r[0]) for r in rows], cursor


async def visible_project(session: AsyncSession, who: Principal, project_id: str) -> Project | None:
    stmt = select(Project).where(Project.id == project_id, project_visible(who))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_stories(
    session: AsyncSession, project_id: str, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    stmt = (
        select(Story, StoryState)
        .outerjoin(StoryState, StoryState.story_id == Story.id)
        .where(Story.project_id == project_id)
    )
    rows, cursor = await paged(session, stmt, Story.id, limit, after)
    stories = [(r[0], r[1]) for r in rows]
    users = await _users(session, {u for s, _ in stories for u in (s.assigned_dev_id, s.assigned_qa_id) if u})
    escrows = await _story_escrows(session, [s.id for s, _ in stories])
    return [story_json(s, st, users, escrows.get(s.id)) for s, st in stories], cursor


async def story_detail(session: AsyncSession, who: Principal, story_id: str) -> dict[str, Any] | None:
    row = (
        await session.execute(
            select(Story, StoryState)
            .join(Project, Project.id == Story.project_id)
            .outerjoin(StoryState, StoryState.story_id == Story.id)
            .where(Story.id == story_id, project_visible(who))
        )
    ).first()
    if row is None:
        return None
    story, state = row
    deliverables = (
        (await session.execute(select(Deliverable).where(Deliverable.story_id == story.id).order_by(Deliverable.id)))
        .scalars()
        .all()
    )
    audit = (
        (
            await session.execute(
                select(StoryAuditLog)
                .where(StoryAuditLog.story_id == story.id)
                .order_by(StoryAuditLog.created_at, StoryAuditLog.id)
                .limit(AUDIT_LOG_LIMIT + 1)
            )
        )
        .scalars()
        .all()
    )
    ids = {story.assigned_dev_id or "", story.assigned_qa_id or ""} | {a.user_id for a in audit}
    users = await _users(session, ids)
    escrow = (await _story_escrows(session, [story.id])).get(story.id)
    release = (
        await session.execute(select(EscrowReleaseRequest).where(EscrowReleaseRequest.story_id == story.id))
    ).scalar_one_or_none()
    body = story_json(story, state, users, escrow)
    body["deliverables"] = [
        {
            "id": d.id,
            "stage": _value(d.stage),
            "status": _value(d.status),
            "pullRequest": {"number": d.pr_number, "url": d.pr_url, "author": d.pr_author},
            "submittedAt": iso(d.submitted_at),
            "reviewedAt": iso(d.reviewed_at),
            "approvedAt": iso(d.approved_at),
        }
        for d in deliverables
    ]
    body["release"] = release_json(release)
    body["auditLog"] = [
        {
            "id": a.id,
            "action": a.action,
            "fromStatus": _value(a.from_status),
            "toStatus": _value(a.to_status),
            "actor": person(users.get(a.user_id)),
            "metadata": a.metadata_,
            "createdAt": iso(a.created_at),
        }
        for a in audit[:AUDIT_LOG_LIMIT]
    ]
    body["auditLogTruncated"] = len(audit) > AUDIT_LOG_LIMIT
    return body


def release_json(r: EscrowReleaseRequest | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "id": r.id,
        "state": r.state,
        "attempts": r.attempts,
        "waitingFor": r.waiting_for,
        "lastError": r.last_error,
        "transactionUrl": r.tx_url,
        "requestedAt": iso(r.created_at),
        "releasedAt": iso(r.released_at),
    }


async def escrow_detail(session: AsyncSession, who: Principal, escrow_id: str) -> dict[str, Any] | None:
    escrow = (
        await session.execute(select(Escrow).where(Escrow.id == escrow_id, escrow_visible(who)))
    ).scalar_one_or_none()
    if escrow is None:
        return None
    release = (
        await session.execute(select(EscrowReleaseRequest).where(EscrowReleaseRequest.escrow_id == escrow.id))
    ).scalar_one_or_none()
    txs = (
        (
            await session.execute(
                select(EscrowChainTx).where(EscrowChainTx.escrow_id == escrow.id).order_by(EscrowChainTx.created_at)
            )
        )
        .scalars()
        .all()
    )
    return {
        **(escrow_summary(escrow) or {}),
        "projectId": escrow.project_id,
        "opportunityId": escrow.opportunity_id,
        "clientId": escrow.client_id,
        "expertId": escrow.expert_id,
        "platformFeeBps": escrow.platform_fee,
        "contractAddress": escrow.contract_address,
        "fundingTransaction": escrow.transaction_hash,
        "releaseTransaction": escrow.release_transaction_hash,
        "fundedAt": iso(escrow.funded_at),
        "releasedAt": iso(escrow.released_at),
        "createdAt": iso(escrow.created_at),
        "release": release_json(release),
        "transactions": [
            {
                "kind": t.kind,
                "chain": t.chain,
                "hash": t.tx_hash,
                "state": t.state,
                "error": t.error,
                "signedAt": iso(t.created_at),
                "confirmedAt": iso(t.confirmed_at),
            }
            for t in txs
        ],
    }


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    error = (d.last_error or "").strip().splitlines()
    return {
        "id": d.delivery_id,
        "event": d.event,
        "action": d.action,
        "repository": d.repository,
        "state": d.state,
        "attempts": d.attempts,
        "receivedAt": iso(d.received_at),
        "nextAttemptAt": iso(d.next_attempt_at),
        "lastError": error[-1][:500] if error else None,
    }


async def list_deliveries(
    session: AsyncSession, state: str | None, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    if state is not None and state not in InboxState.ALL:
        raise BadRequest(f"state must be one of {', '.join(InboxState.ALL)}")
    stmt = select(WebhookDelivery)
    if state:
        stmt = stmt.where(WebhookDelivery.state == state)
    rows, cursor = await paged(
        session, stmt, WebhookDelivery.delivery_id, limit, after, key=lambda row: str(row[0].delivery_id)
    )
    return [delivery_json(r[0]) for r in rows], cursor
