"""Money commands: payout wallets, an escrow's state and how to fund it, retrying a failed release.
They call what the operator's `bmad-app wallet set` and `bmad-app escrow retry` call, so a command can
never pay twice or skip a check the operator's path makes."""

from __future__ import annotations

from sqlalchemy import select

from github_app.chains.addresses import CHAINS, POLYGON, InvalidAddress, evm_ref
from github_app.commands.registry import Call, Outcome, Reply, register
from github_app.commands.stories import locked_story
from github_app.db.app_tables import EscrowReleaseRequest, RefundRequest, Wallet
from github_app.db.enums import EscrowStatus, StoryStatus
from github_app.db.models import Escrow
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain.command_grammar import UsageError
from github_app.domain.command_rights import CLIENT, CLIENT_OR_DEVELOPER, MARKETPLACE_USER
from github_app.escrow.refunds import RefundRefused, hold_for_refund
from github_app.escrow.retry import RetryRefused, retry_release
from github_app.escrow.store import lock_escrow_state
from github_app.escrow.wallets import store_wallet
from github_app.services.stories import audit, opportunity_of
from github_app.services.views import release_text


@register(
    "wallet",
    usage="/bmad wallet <polygon|solana> <address>",
    example="/bmad wallet polygon 0x...",
    summary="set your own payout wallet (checked as `bmad-app wallet set` checks it)",
    rule=MARKETPLACE_USER,
    doing="set a wallet",
)
async def wallet(call: Call) -> Reply:
    if len(call.args) != 2:
        raise UsageError("wallet takes a chain and an address")
    chain = call.args[0].lower()
    if chain not in CHAINS:
        raise UsageError(f"the chain is polygon or solana, not {call.args[0][:20]!r}")
    assert call.speaker.user_id is not None  # MARKETPLACE_USER
    try:
        address = await store_wallet(call.session, call.speaker.user_id, chain, call.args[1])
    except InvalidAddress as exc:
        return Reply.refused(f"that {chain} address is not valid: {exc}")
    # Only the commenter's own address is ever shown: a reply is public.
    return Reply.applied(
        f"{call.speaker.mention}'s {chain} payout wallet is now `{address}`. Releases already signed keep "
        "the address they were signed for."
    )


async def _escrow_of(call: Call, story_id: str, developer_id: str | None) -> Escrow | None:
    opportunity_id = await opportunity_of(call.session, story_id)
    if opportunity_id is None:
        return None
    stmt = select(Escrow).where(Escrow.opportunity_id == opportunity_id)
    if developer_id is not None:
        stmt = stmt.where(Escrow.expert_id == developer_id)
    return (await call.session.execute(stmt.order_by(Escrow.created_at.desc()))).scalars().first()


@register(
    "escrow",
    usage="/bmad escrow <story>",
    example="/bmad escrow 1.3",
    summary="the story's escrow, and how to fund it while it is PENDING",
    rule=CLIENT_OR_DEVELOPER,
    doing="see this story's escrow",
)
async def escrow(call: Call) -> Reply:
    if len(call.args) != 1:
        raise UsageError("escrow takes a story")
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, _snap = found
    label = f"story {story.epic_number}.{story.story_number}"
    release = (
        (await call.session.execute(select(EscrowReleaseRequest).where(EscrowReleaseRequest.story_id == story.id)))
        .scalars()
        .first()
    )
    row = await _escrow_of(call, story.id, story.assigned_dev_id)
    if row is None:
        why = release_text(release) if release else "no escrow has been created for it in the marketplace yet"
        return Reply.applied(f"{label}: {why}")
    lines = [
        f"{label}: escrow `{row.id}` on {row.blockchain} is **{row.status}**: {row.amount} {row.currency} "
        f"(base units), platform fee {row.platform_fee} basis points."
    ]
    if release is not None:
        lines.append(f"Release: {release_text(release)}.")
    if row.status == EscrowStatus.PENDING:
        lines += ["", await funding_instructions(call, row)]
    return Reply.applied("\n".join(lines))


async def funding_instructions(call: Call, row: Escrow) -> str:
    """How the client funds a PENDING escrow: the one place these instructions are written."""
    settings = call.runtime.settings
    expert = await call.session.get(Wallet, (row.expert_id, row.blockchain))
    if row.blockchain != POLYGON:
        return (
            f"To fund it, the client transfers {row.amount} {row.currency} to the escrow account the "
            "marketplace shows for it; the app sees the funding on its next check."
        )
    token = dict(settings.polygon_tokens).get(row.currency.upper())
    missing = [
        what
        for what, value in (
            ("POLYGON_ESCROW_CONTRACT", settings.polygon_escrow_contract),
            (f"a POLYGON_TOKENS entry for {row.currency}", token),
        )
        if not value
    ]
    if expert is None:
        missing.append("the developer's Polygon wallet (`/bmad wallet polygon 0x...`, by the developer)")
    if missing:
        return "It cannot be funded yet: " + "; ".join(missing) + " is missing."
    assert expert is not None
    # The contract keys an escrow by its funder and this reference (`escrowIdOf(client, ref)`).
    escrow_key = "0x" + evm_ref(row.id).hex()
    return "\n".join(
        [
            "To fund it, from the client's wallet on Polygon:",
            "",
            f"- contract: `{settings.polygon_escrow_contract}`",
            f"- escrow reference (bytes32): `{escrow_key}`",
            f"- token: `{token}` ({row.currency})",
            f"- amount: `{row.amount}` (base units)",
            f"- fee: `{row.platform_fee}` basis points",
            "",
            f"1. `approve({settings.polygon_escrow_contract}, {row.amount})` on the token",
            f"2. `fund({escrow_key}, {expert.address}, {token}, {row.amount}, {row.platform_fee})` on the contract",
        ]
    )


@register(
    "release",
    usage="/bmad release <story>",
    example="/bmad release 1.3",
    summary="retry a release that failed, as `bmad-app escrow retry` does: never a second payment",
    rule=CLIENT,
    doing="retry releases",
)
async def release(call: Call) -> Reply:
    if len(call.args) != 1:
        raise UsageError("release takes a story")
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, _snap = found
    label = f"story {story.epic_number}.{story.story_number}"
    stmt = select(EscrowReleaseRequest).where(EscrowReleaseRequest.story_id == story.id).with_for_update()
    request = (await call.session.execute(stmt)).scalars().first()
    if request is None:
        return Reply.refused(f"{label} is {story.status}: it has no release to retry (a release follows DONE)")
    try:
        await retry_release(call.session, request)
    except RetryRefused as exc:
        return Reply.refused(f"{label}: {exc} ({release_text(request)})")
    audit(call.session, story, "release_retried", call.actor, {**call.fields(), "reason": "release retried"})
    return Reply(
        Outcome.PENDING,
        f"{label}: the release is due again; the payment worker asks the chain about any transaction already "
        "sent before signing anything, so it is never paid twice. Its progress shows on the pull request.",
    )


@register(
    "refund",
    usage="/bmad refund <story>",
    example="/bmad refund 1.3",
    summary="refund the story's funded escrow to you (not once the story is DONE), as `bmad-app escrow refund` does",
    rule=CLIENT,
    doing="refund escrows",
)
async def refund(call: Call) -> Reply:
    if len(call.args) != 1:
        raise UsageError("refund takes a story")
    found = await locked_story(call, call.args[0])
    if isinstance(found, Reply):
        return found
    story, _snap = found
    label = f"story {story.epic_number}.{story.story_number}"
    if story.status == StoryStatus.DONE:
        return Reply.refused(f"{label} is DONE: its escrow pays the developer and is not refunded")
    row = await _escrow_of(call, story.id, None)
    if row is None:
        return Reply.refused(f"{label} has no escrow to refund")
    if row.status != EscrowStatus.FUNDED:
        return Reply.refused(f"escrow `{row.id}` of {label} is {row.status}: only a FUNDED escrow is refunded")
    # The same guard as the operator's refund, under the escrow's own lock: never a release and a refund.
    state = await lock_escrow_state(call.session, row.id, lock=not call.runtime.is_sqlite)
    try:
        await hold_for_refund(call.session, row, state)
    except RefundRefused as exc:
        return Reply.refused(f"{label}: {exc}")
    now = utcnow()
    created = await insert_if_absent(
        call.session,
        RefundRequest.__table__,  # type: ignore[arg-type]
        {
            "escrow_id": row.id,
            "story_id": story.id,
            "requested_by": call.speaker.user_id or "",
            "installation_id": call.rc.installation_id,
            "repository": call.rc.repository,
            "comment_id": call.comment.id,
            "issue_number": call.comment.issue_number,
            "state": "pending",
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
        conflict=["escrow_id"],
    )
    if not created:
        return Reply.refused(f"a refund of escrow `{row.id}` was already requested")
    audit(
        call.session,
        story,
        "refund_requested",
        call.actor,
        {**call.fields(), "escrowId": row.id, "reason": "refund requested by the client"},
    )
    return Reply(
        Outcome.PENDING,
        f"{label}: refund of escrow `{row.id}` requested. From now on it is never released to the developer; "
        "the refund is signed and sent to your wallet, and this reply says when it lands.",
    )
