"""Money commands: payout wallets, an escrow's state and how to fund it, retrying a failed release,
refunding a story's or a planning stage's escrow.
They call what the operator's `bmad-app wallet set` and `bmad-app escrow retry` call, so a command can
never pay twice or skip a check the operator's path makes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from github_app.bmad.planning import PLANNING_STAGES
from github_app.chains.addresses import CHAINS, InvalidAddress
from github_app.commands.registry import Call, Outcome, Reply, quiet, register
from github_app.commands.stories import locked_story
from github_app.db.app_tables import EscrowReleaseRequest, RefundRequest
from github_app.db.enums import EscrowStatus, OpportunityStatus, StoryStatus
from github_app.db.models import Escrow, Opportunity, Story
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain.command_grammar import UsageError
from github_app.domain.command_rights import CLIENT, CLIENT_OR_DEVELOPER, MARKETPLACE_USER
from github_app.escrow.instructions import funding_instructions
from github_app.escrow.refunds import RefundRefused, hold_for_refund
from github_app.escrow.retry import RetryRefused, retry_release
from github_app.escrow.store import lock_escrow_state
from github_app.escrow.wallets import NodeWalletChecker, WalletError, store_wallet
from github_app.services.stages import lock_opportunity, stage_audit, stage_opportunity
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
    # The operator's checks too: where the chain's node is configured, a program, a token account or
    # a contract is refused as a payout wallet.
    checker = NodeWalletChecker(call.runtime.settings)
    try:
        address = await store_wallet(call.session, call.speaker.user_id, chain, call.args[1], checker)
    except InvalidAddress as exc:
        return Reply.refused(f"that {chain} address is not valid: {quiet(str(exc))}")
    except WalletError as exc:
        return Reply.refused(f"that {chain} address cannot be a payout wallet: {quiet(str(exc))}")
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
        lines += ["", await funding_instructions(call.session, call.runtime.settings, row)]
    return Reply.applied("\n".join(lines))


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


@dataclass(frozen=True)
class RefundSubject:
    """What a refund is asked for: a story, or a planning stage (its Opportunity). Either goes through
    the one refund path below, with the same guard, request and audit."""

    label: str
    escrow: Escrow | None
    paid_out: str | None  # why its escrow now pays the expert and is not refunded, if it does
    story: Story | None = None
    opportunity: Opportunity | None = None


async def _story_subject(call: Call, word: str) -> RefundSubject | Reply:
    found = await locked_story(call, word)
    if isinstance(found, Reply):
        return found
    story, _snap = found
    label = f"story {story.epic_number}.{story.story_number}"
    done = f"{label} is DONE: its escrow pays the developer and is not refunded"
    return RefundSubject(
        label,
        await _escrow_of(call, story.id, None),
        done if story.status == StoryStatus.DONE else None,
        story=story,
    )


async def _stage_subject(call: Call, stage: str) -> RefundSubject | Reply:
    refusal = call.refusal()
    if refusal is not None:
        return Reply.refused(refusal)
    found = await stage_opportunity(call.session, call.rc.project.id, stage)
    if found is None:
        return Reply.refused(f"this project has no {stage} stage (no {stage} opportunity)")
    # Under the stage's own lock, as its completion: a refund and a completion never cross.
    opportunity = await lock_opportunity(call.session, found.id)
    label = f"the {stage} stage"
    done = f"{label} is COMPLETED: its escrow pays the expert and is not refunded"
    stmt = select(Escrow).where(Escrow.opportunity_id == opportunity.id).order_by(Escrow.created_at.desc())
    return RefundSubject(
        label,
        (await call.session.execute(stmt)).scalars().first(),
        done if opportunity.status == OpportunityStatus.COMPLETED else None,
        opportunity=opportunity,
    )


def _audit_refund(call: Call, subject: RefundSubject, escrow_id: str) -> None:
    meta = {**call.fields(), "escrowId": escrow_id, "reason": "refund requested by the client"}
    if subject.story is not None:
        audit(call.session, subject.story, "refund_requested", call.actor, meta)
    elif subject.opportunity is not None:
        opportunity = subject.opportunity
        stage_audit(
            call.session,
            opportunity.project_id,
            str(opportunity.stage),
            "refund_requested",
            call.actor,
            meta,
            opportunity_id=opportunity.id,
        )


@register(
    "refund",
    usage="/bmad refund <story|stage>",
    example="/bmad refund 1.3",
    summary=(
        "refund the funded escrow of a story (not once it is DONE) or of a planning stage such as `pm` (not once "
        "it is COMPLETED) to you, as `bmad-app escrow refund` does"
    ),
    rule=CLIENT,
    doing="refund escrows",
)
async def refund(call: Call) -> Reply:
    if len(call.args) != 1:
        raise UsageError("refund takes a story (1.3) or a planning stage (" + ", ".join(PLANNING_STAGES) + ")")
    word = call.args[0]
    subject = (
        await _stage_subject(call, word.lower())
        if word.lower() in PLANNING_STAGES
        else await _story_subject(call, word)
    )
    if isinstance(subject, Reply):
        return subject
    label, row = subject.label, subject.escrow
    if subject.paid_out is not None:
        return Reply.refused(subject.paid_out)
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
            "story_id": subject.story.id if subject.story is not None else None,
            "opportunity_id": subject.opportunity.id if subject.opportunity is not None else None,
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
    _audit_refund(call, subject, row.id)
    expert = "developer" if subject.story is not None else "expert"
    return Reply(
        Outcome.PENDING,
        f"{label}: refund of escrow `{row.id}` requested. From now on it is never released to the {expert}; "
        "the refund is signed and sent to your wallet, and this reply says when it lands.",
    )
