"""The app's own tables, beside the seed's. Prisma ignores them (they are not in schema.prisma), so
they use snake_case names to stand apart from the marketplace's models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from github_app.db.base import Base
from github_app.db.inbox_states import InboxState as InboxState
from github_app.db.types import Json, new_id, utcnow


class WebhookDelivery(Base):
    """One verified GitHub delivery, committed before it is acknowledged.

    `payload` is the JSON body exactly as GitHub sent it (bytes), never re-serialised: the hot path
    pays for no encoding and the row is the evidence of what arrived.
    """

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        PrimaryKeyConstraint("delivery_id", name="webhook_inbox_pkey"),
        CheckConstraint("state IN ('pending', 'processing', 'done', 'dead')", name="webhook_inbox_state_check"),
        Index("webhook_inbox_state_next_attempt_idx", "state", "next_attempt_at"),
    )

    delivery_id: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(Text)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repository: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column()
    state: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column()


class InstallationRepository(Base):
    """Which installation serves which repository; kept current by installation events."""

    __tablename__ = "installation_repository"
    __table_args__ = (
        PrimaryKeyConstraint("repository_id", name="installation_repository_pkey"),
        Index("installation_repository_full_name_key", "full_name_key", unique=True),
        Index("installation_repository_installation_idx", "installation_id"),
    )

    repository_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    full_name: Mapped[str] = mapped_column(Text)
    # GitHub names are case-insensitive; the lowered copy is what lookups and uniqueness use.
    full_name_key: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column()


class InstallationStatus(Base):
    """What the seed's GitHubInstallation has no column for: suspension."""

    __tablename__ = "installation_status"
    __table_args__ = (PrimaryKeyConstraint("installation_id", name="installation_status_pkey"),)

    installation_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    suspended_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class GitHubAccount(Base):
    """The GitHub account a marketplace user is bound to, by its numeric id, from their first action on.

    Logins can be renamed and then reclaimed by someone else; the id cannot. `login` is the login seen
    when the binding was made.
    """

    __tablename__ = "github_account"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", name="github_account_pkey"),
        UniqueConstraint("user_id", name="github_account_user_id_key"),
        ForeignKeyConstraint(["user_id"], ["User.id"], name="github_account_user_id_fkey", ondelete="CASCADE"),
    )

    account_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    user_id: Mapped[str] = mapped_column(Text)
    login: Mapped[str] = mapped_column(Text)
    bound_at: Mapped[datetime] = mapped_column()


# SQLite only auto-increments an INTEGER PRIMARY KEY.
Serial = BigInteger().with_variant(Integer(), "sqlite")


class StoryOpportunity(Base):
    """A story published to the developer marketplace. Shared: the marketplace's services write it too."""

    __tablename__ = "story_opportunity"
    __table_args__ = (
        PrimaryKeyConstraint("story_id", name="story_opportunity_pkey"),
        UniqueConstraint("opportunity_id", name="story_opportunity_opportunity_id_key"),
        ForeignKeyConstraint(["story_id"], ["Story.id"], name="story_opportunity_story_id_fkey", ondelete="CASCADE"),
        ForeignKeyConstraint(
            ["opportunity_id"], ["Opportunity.id"], name="story_opportunity_opportunity_id_fkey", ondelete="CASCADE"
        ),
    )

    story_id: Mapped[str] = mapped_column(Text)
    opportunity_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()


class PullRequestLink(Base):
    """What the app knows of a pull request: its story, and the state its events have shown so far."""

    __tablename__ = "pull_request_link"
    __table_args__ = (
        PrimaryKeyConstraint("repository_key", "pr_number", name="pull_request_link_pkey"),
        ForeignKeyConstraint(["story_id"], ["Story.id"], name="pull_request_link_story_id_fkey", ondelete="SET NULL"),
        Index("pull_request_link_story_idx", "story_id"),
        Index("pull_request_link_head_idx", "repository_key", "head_sha"),
    )

    repository_key: Mapped[str] = mapped_column(Text)
    pr_number: Mapped[int] = mapped_column(Integer)
    repository: Mapped[str] = mapped_column(Text)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    project_id: Mapped[str] = mapped_column(Text)
    story_id: Mapped[str | None] = mapped_column(Text)
    link_source: Mapped[str | None] = mapped_column(Text)
    link_problem: Mapped[str | None] = mapped_column(Text)
    html_url: Mapped[str] = mapped_column(Text)
    author_login: Mapped[str] = mapped_column(Text)
    head_sha: Mapped[str] = mapped_column(Text)
    head_ref: Mapped[str] = mapped_column(Text)
    draft: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(Text)
    merged: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    merged_at: Mapped[datetime | None] = mapped_column()
    pr_updated_at: Mapped[datetime | None] = mapped_column()
    refusal: Mapped[str | None] = mapped_column(Text)
    # A gate file pushed to this PR's branch that names no story we could find.
    gate_problem: Mapped[str | None] = mapped_column(Text)
    # The branch the PR merges into: only the default branch completes a story.
    base_ref: Mapped[str | None] = mapped_column(Text)
    # When the head commit last changed (the PR's updated_at then): a gate committed to the default
    # branch before it cannot have reviewed that head.
    head_updated_at: Mapped[datetime | None] = mapped_column()
    reverts_pr: Mapped[int | None] = mapped_column(Integer)
    reverted_by_pr: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column()


class StoryState(Base):
    """The story facts the state machine needs that the seed's Story has no column for."""

    __tablename__ = "story_state"
    __table_args__ = (
        PrimaryKeyConstraint("story_id", name="story_state_pkey"),
        ForeignKeyConstraint(["story_id"], ["Story.id"], name="story_state_story_id_fkey", ondelete="CASCADE"),
    )

    story_id: Mapped[str] = mapped_column(Text)
    pr_merged: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    gate: Mapped[str | None] = mapped_column(Text)
    gate_accepted: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    gate_note: Mapped[str | None] = mapped_column(Text)
    gate_problem: Mapped[str | None] = mapped_column(Text)
    # The commit time of the gate in force: an older gate delivered late does not replace it.
    gate_committed_at: Mapped[datetime | None] = mapped_column()
    # The heads the gate in force reviewed: the commit it was pushed as and the one it was built on
    # (a gate pushed to the default branch reviews the PR's head at that moment).
    reviewed_head: Mapped[str | None] = mapped_column(Text)
    reviewed_base: Mapped[str | None] = mapped_column(Text)
    merged_head: Mapped[str | None] = mapped_column(Text)
    gate_expires_at: Mapped[datetime | None] = mapped_column()
    blocked_from: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GateReview(Base):
    """One version of a QA gate file: a review cycle. Unique per file content (the blob), so a
    redelivered push, the same commit seen on two branches, or a squash merge count once."""

    __tablename__ = "gate_review"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="gate_review_pkey"),
        UniqueConstraint("story_id", "path", "blob_sha", name="gate_review_story_path_blob_key"),
        ForeignKeyConstraint(["story_id"], ["Story.id"], name="gate_review_story_id_fkey", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(Serial, autoincrement=True)
    story_id: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    blob_sha: Mapped[str] = mapped_column(Text)
    commit_sha: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    reviewer_login: Mapped[str] = mapped_column(Text)
    committed_at: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column()


class ContentOrigin(Base):
    """Who first introduced a version (blob) of a story or gate file in a repository. A file counts as
    someone's approval or review only when that person introduced its exact content: whoever merges,
    squashes, rebases or cherry-picks it later only carries it."""

    __tablename__ = "content_origin"
    __table_args__ = (PrimaryKeyConstraint("repository_key", "blob_sha", name="content_origin_pkey"),)

    repository_key: Mapped[str] = mapped_column(Text)
    blob_sha: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    introducer_login: Mapped[str] = mapped_column(Text)
    introducer_id: Mapped[int | None] = mapped_column(BigInteger)  # their GitHub account id
    commit_sha: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # push | pull_request
    seen_at: Mapped[datetime] = mapped_column()


class ReleaseState:
    PENDING = "pending"  # due: bind the escrow (or wait for funding / configuration), then sign
    RELEASING = "releasing"  # a signed transaction is recorded: reconcile with the chain, never re-sign blindly
    RELEASED = "released"
    FAILED = "failed"  # permanent, with its reason; only `escrow retry` makes it due again
    CANCELLED = "cancelled"  # the escrow was refunded instead
    ALL = (PENDING, RELEASING, RELEASED, FAILED, CANCELLED)
    DUE = (PENDING, RELEASING)


class EscrowReleaseRequest(Base):
    """Written in the same transaction as a story's DONE: the durable instruction to pay its expert.
    The release worker consumes it under a lease; the unique story_id means a story is never paid twice,
    the unique escrow_id that an escrow never pays two stories."""

    __tablename__ = "escrow_release_request"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="escrow_release_request_pkey"),
        UniqueConstraint("story_id", name="escrow_release_request_story_id_key"),
        UniqueConstraint("escrow_id", name="escrow_release_request_escrow_id_key"),
        # A planning stage's release has no story: one per stage Opportunity.
        Index(
            "escrow_release_request_stage_key",
            "opportunity_id",
            unique=True,
            sqlite_where=text("story_id IS NULL"),
            postgresql_where=text("story_id IS NULL"),
        ),
        CheckConstraint(
            "story_id IS NOT NULL OR opportunity_id IS NOT NULL", name="escrow_release_request_subject_check"
        ),
        ForeignKeyConstraint(
            ["story_id"], ["Story.id"], name="escrow_release_request_story_id_fkey", ondelete="RESTRICT"
        ),
        CheckConstraint(
            "state IN ('pending', 'releasing', 'released', 'failed', 'cancelled')",
            name="escrow_release_request_state_check",
        ),
        Index("escrow_release_request_due_idx", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(Text, default=new_id)
    # None for a planning stage's release, which pays the expert of `opportunity_id`.
    story_id: Mapped[str | None] = mapped_column(Text)
    deliverable_id: Mapped[str | None] = mapped_column(Text)
    expert_id: Mapped[str] = mapped_column(Text)
    opportunity_id: Mapped[str | None] = mapped_column(Text)
    escrow_id: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default=text("'pending'"), default="pending")
    reason: Mapped[str] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    # Why a pending release is not going out yet ("waiting for funding", "Polygon is not configured").
    waiting_for: Mapped[str | None] = mapped_column(Text)
    released_at: Mapped[datetime | None] = mapped_column()
    # The explorer link of the release transaction (while releasing, then once paid).
    tx_url: Mapped[str | None] = mapped_column(Text)


class Wallet(Base):
    """A user's payout (expert) or funding (client) address on one chain. Not in the seed."""

    __tablename__ = "wallet"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "chain", name="wallet_pkey"),
        CheckConstraint("chain IN ('polygon', 'solana')", name="wallet_chain_check"),
        ForeignKeyConstraint(["user_id"], ["User.id"], name="wallet_user_id_fkey", ondelete="CASCADE"),
    )

    user_id: Mapped[str] = mapped_column(Text)
    chain: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChainTxState:
    SIGNED = "signed"  # recorded before broadcast; its fate is asked of the chain
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    DROPPED = "dropped"  # the chain confirmed it can never land (nonce used / blockhash expired)


class EscrowChainTx(Base):
    """A signed release or refund transaction, committed BEFORE it is broadcast: after a crash the
    reconciler asks the chain about exactly this hash instead of signing another payment."""

    __tablename__ = "escrow_chain_tx"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="escrow_chain_tx_pkey"),
        UniqueConstraint("tx_hash", name="escrow_chain_tx_hash_key"),
        CheckConstraint("kind IN ('release', 'refund', 'rescue')", name="escrow_chain_tx_kind_check"),
        CheckConstraint("state IN ('signed', 'confirmed', 'reverted', 'dropped')", name="escrow_chain_tx_state_check"),
        ForeignKeyConstraint(["escrow_id"], ["Escrow.id"], name="escrow_chain_tx_escrow_id_fkey", ondelete="RESTRICT"),
        Index("escrow_chain_tx_escrow_idx", "escrow_id", "kind"),
        Index("escrow_chain_tx_signer_nonce_idx", "signer", "nonce"),
    )

    id: Mapped[str] = mapped_column(Text, default=new_id)
    escrow_id: Mapped[str | None] = mapped_column(Text)  # none for a rescue (the arbiter's, of no escrow)
    kind: Mapped[str] = mapped_column(Text)
    chain: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str] = mapped_column(Text)
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    signer: Mapped[str] = mapped_column(Text)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    recent_blockhash: Mapped[str | None] = mapped_column(Text)
    last_valid_block_height: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    # A replacement (same nonce, higher fee) names the transaction it replaces; either may land.
    replaces: Mapped[str | None] = mapped_column(Text)


class EvmSignerNonce(Base):
    """The next nonce of one signing key on one chain, allocated under this row's lock so that workers
    on several machines never sign two transactions with one nonce."""

    __tablename__ = "evm_signer_nonce"
    __table_args__ = (PrimaryKeyConstraint("chain_id", "signer", name="evm_signer_nonce_pkey"),)

    chain_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    signer: Mapped[str] = mapped_column(Text)
    next_nonce: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EscrowChainState(Base):
    """What the seed's Escrow has no column for: a funding mismatch found on-chain, and refunds."""

    __tablename__ = "escrow_chain_state"
    __table_args__ = (
        PrimaryKeyConstraint("escrow_id", name="escrow_chain_state_pkey"),
        ForeignKeyConstraint(
            ["escrow_id"], ["Escrow.id"], name="escrow_chain_state_escrow_id_fkey", ondelete="CASCADE"
        ),
    )

    escrow_id: Mapped[str] = mapped_column(Text)
    problem: Mapped[str | None] = mapped_column(Text)
    refund_requested_at: Mapped[datetime | None] = mapped_column()
    refund_tx_hash: Mapped[str | None] = mapped_column(Text)
    refunded_at: Mapped[datetime | None] = mapped_column()
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Polygon: the client address whose funding was accepted (the contract keys the escrow by it), and
    # the block it was accepted at (searches for its release or refund events start there).
    funder: Mapped[str | None] = mapped_column(Text)
    watch_from_block: Mapped[int | None] = mapped_column(BigInteger)


class OutboxItem(Base):
    """The desired state of one thing the app shows on GitHub (a check run, the PR comment).

    Handlers overwrite `payload` and bump `version` in their transaction; the sender brings GitHub to
    the latest version. A burst of events therefore costs one API call per target, not one per event.
    """

    __tablename__ = "github_outbox"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="github_outbox_pkey"),
        UniqueConstraint("repository", "kind", "target", name="github_outbox_target_key"),
        Index("github_outbox_due_idx", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Serial, autoincrement=True)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    repository: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"), default=1)
    sent_version: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    remote_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()


class GitHubPace(Base):
    """How fast the app may write to GitHub right now, shared by every process and machine: GitHub's
    secondary limits count per installation, not per process. Times are seconds since the epoch.

    `next_write_at` spaces all writes (a token bucket of one); `recent_creates` holds the times of the
    last hour's content-creating requests (at most the hourly budget of them), for the per-minute and
    per-hour windows; `not_before` is a Retry-After or rate-limit reset one sender was told, which
    every sender then honours.
    """

    __tablename__ = "github_pace"
    __table_args__ = (PrimaryKeyConstraint("scope", name="github_pace_pkey"),)

    scope: Mapped[str] = mapped_column(Text)
    next_write_at: Mapped[float] = mapped_column(Double, server_default=text("0"), default=0.0)
    not_before: Mapped[float] = mapped_column(Double, server_default=text("0"), default=0.0)
    recent_creates: Mapped[str] = mapped_column(Text, server_default=text("'[]'"), default="[]")
    updated_at: Mapped[datetime] = mapped_column()


class ApiKeyAdmin(Base):
    """An API key (the seed's `ApiKey`) that may use the operator endpoints. Not in the seed."""

    __tablename__ = "api_key_admin"
    __table_args__ = (PrimaryKeyConstraint("api_key_id", name="api_key_admin_pkey"),)

    api_key_id: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class StagePullRequest(Base):
    """A pull request that touches a planning stage's documents: the stage it was judged against, the
    Deliverable it delivers (None when refused, with the reason), and the heads the stage machine needs."""

    __tablename__ = "stage_pull_request"
    __table_args__ = (
        PrimaryKeyConstraint("repository_key", "pr_number", name="stage_pull_request_pkey"),
        UniqueConstraint("deliverable_id", name="stage_pull_request_deliverable_id_key"),
        ForeignKeyConstraint(
            ["deliverable_id"], ["Deliverable.id"], name="stage_pull_request_deliverable_id_fkey", ondelete="SET NULL"
        ),
        Index("stage_pull_request_opportunity_idx", "opportunity_id"),
    )

    repository_key: Mapped[str] = mapped_column(Text)
    pr_number: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(Text)
    opportunity_id: Mapped[str | None] = mapped_column(Text)
    deliverable_id: Mapped[str | None] = mapped_column(Text)
    refusal: Mapped[str | None] = mapped_column(Text)
    review_problem: Mapped[str | None] = mapped_column(Text)
    approved_head: Mapped[str | None] = mapped_column(Text)
    merged_head: Mapped[str | None] = mapped_column(Text)
    merge_sha: Mapped[str | None] = mapped_column(Text)
    documents: Mapped[str | None] = mapped_column(Text)  # where the stage's documents are, for the views
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StageAuditLog(Base):
    """The planning stages' audit trail, as StoryAuditLog is the stories' (which needs a story)."""

    __tablename__ = "stage_audit_log"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="stage_audit_log_pkey"),
        Index("stage_audit_log_project_idx", "project_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(Text, default=new_id)
    project_id: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(Text)
    opportunity_id: Mapped[str | None] = mapped_column(Text)
    deliverable_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, object] | None] = mapped_column("metadata", Json)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommandComment(Base):
    """A comment that held bot commands: what it asked (to tell an edit that changes its commands from
    one that does not), who wrote it, and the GitHub time of the version last acted on (an older
    delivery of it never undoes a newer one). It is also the audit of commands that touch no story."""

    __tablename__ = "command_comment"
    __table_args__ = (
        PrimaryKeyConstraint("repository_key", "comment_id", name="command_comment_pkey"),
        Index("command_comment_repository_idx", "repository_key", "outcome"),
    )

    repository_key: Mapped[str] = mapped_column(Text)  # owner/name, lower case
    comment_id: Mapped[int] = mapped_column(BigInteger)
    issue_number: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    login: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    commands: Mapped[str] = mapped_column(Text)
    comment_url: Mapped[str | None] = mapped_column(Text)
    comment_updated_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class CommandUse(Base):
    """One run of a comment's commands by a GitHub account, for the per-person flood limit."""

    __tablename__ = "command_use"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="command_use_pkey"),
        Index("command_use_account_idx", "account_id", "at"),
    )

    id: Mapped[int] = mapped_column(Serial, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column()
    flooded: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)


class RefundRequest(Base):
    """A client's `/bmad refund`, carried out by the refund worker with the operator's `refund()`: the
    guard was passed (the escrow is held for the refund) in the command's own transaction; the signing,
    sending and waiting happen here, outside any webhook delivery. `state` is pending, refunded or
    failed; the command comment's reply and reaction follow it."""

    __tablename__ = "refund_request"
    __table_args__ = (
        PrimaryKeyConstraint("escrow_id", name="refund_request_pkey"),
        CheckConstraint("state IN ('pending', 'refunded', 'failed')", name="refund_request_state_check"),
        CheckConstraint("story_id IS NOT NULL OR opportunity_id IS NOT NULL", name="refund_request_subject_check"),
        Index("refund_request_due_idx", "state", "next_attempt_at"),
    )

    escrow_id: Mapped[str] = mapped_column(Text)
    # The story whose escrow it refunds, or (no story) the planning stage's Opportunity.
    story_id: Mapped[str | None] = mapped_column(Text)
    opportunity_id: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    repository: Mapped[str] = mapped_column(Text)
    comment_id: Mapped[int] = mapped_column(BigInteger)
    issue_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    tx_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
