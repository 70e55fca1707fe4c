"""The seed's 13 models (schema.prisma), with Prisma's physical names.

The marketplace's TypeScript services read and write these tables through Prisma, so nothing here may
differ from what Prisma generated: table and column names are Prisma's field names, constraint and index
names follow Prisma's conventions (`<Table>_pkey`, `<Table>_<cols>_key`, `<Table>_<cols>_idx`,
`<Table>_<col>_fkey`). The DDL itself lives in migrations/sql; tests prove these models match it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Index, PrimaryKeyConstraint, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from github_app.db.base import Base, created_at_column, id_column, updated_at_column
from github_app.db.enums import (
    BidStatus,
    DeliverableStatus,
    EscrowStatus,
    OpportunityStatus,
    ProjectStatus,
    Role,
    Stage,
    StoryStatus,
)
from github_app.db.types import Json, Timestamp3, pg_enum, utcnow

RoleType = pg_enum(Role, "Role")
ProjectStatusType = pg_enum(ProjectStatus, "ProjectStatus")
StageType = pg_enum(Stage, "Stage")
OpportunityStatusType = pg_enum(OpportunityStatus, "OpportunityStatus")
BidStatusType = pg_enum(BidStatus, "BidStatus")
StoryStatusType = pg_enum(StoryStatus, "StoryStatus")
DeliverableStatusType = pg_enum(DeliverableStatus, "DeliverableStatus")
EscrowStatusType = pg_enum(EscrowStatus, "EscrowStatus")


def fk(table: str, column: str, target: str, *, nullable: bool) -> ForeignKeyConstraint:
    """Prisma's referential actions: RESTRICT for required relations, SET NULL for optional ones."""
    return ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=f"{table}_{column}_fkey",
        ondelete="SET NULL" if nullable else "RESTRICT",
        onupdate="CASCADE",
    )


def idx(table: str, *columns: str, unique: bool = False) -> Index:
    suffix = "key" if unique else "idx"
    return Index(f"{table}_{'_'.join(columns)}_{suffix}", *columns, unique=unique)


class User(Base):
    __tablename__ = "User"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="User_pkey"),
        idx("User", "email", unique=True),
        idx("User", "githubUsername", unique=True),
        idx("User", "email"),
        idx("User", "githubUsername"),
        idx("User", "role"),
    )

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column("email", Text)
    name: Mapped[str | None] = mapped_column("name", Text)
    github_username: Mapped[str | None] = mapped_column("githubUsername", Text)
    role: Mapped[Role] = mapped_column("role", RoleType)
    avatar_url: Mapped[str | None] = mapped_column("avatarUrl", Text)
    bio: Mapped[str | None] = mapped_column("bio", Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class Project(Base):
    __tablename__ = "Project"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Project_pkey"),
        fk("Project", "clientId", "User", nullable=False),
        idx("Project", "clientId"),
        idx("Project", "status"),
        idx("Project", "currentStage"),
    )

    id: Mapped[str] = id_column()
    client_id: Mapped[str] = mapped_column("clientId", Text)
    name: Mapped[str] = mapped_column("name", Text)
    description: Mapped[str | None] = mapped_column("description", Text)
    status: Mapped[ProjectStatus] = mapped_column(
        "status", ProjectStatusType, default=ProjectStatus.PLANNING, server_default=text("'PLANNING'")
    )
    repo_url: Mapped[str | None] = mapped_column("repoUrl", Text)
    repo_name: Mapped[str | None] = mapped_column("repoName", Text)
    current_stage: Mapped[Stage | None] = mapped_column("currentStage", StageType)
    brief: Mapped[Any | None] = mapped_column("brief", Json)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    client: Mapped[User] = relationship(foreign_keys=[client_id])


class Opportunity(Base):
    __tablename__ = "Opportunity"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Opportunity_pkey"),
        fk("Opportunity", "projectId", "Project", nullable=False),
        # Bid references Opportunity too; the cycle is broken with ALTER on create_all.
        ForeignKeyConstraint(
            ["acceptedBidId"],
            ["Bid.id"],
            name="Opportunity_acceptedBidId_fkey",
            ondelete="SET NULL",
            onupdate="CASCADE",
            use_alter=True,
        ),
        idx("Opportunity", "acceptedBidId", unique=True),
        idx("Opportunity", "projectId"),
        idx("Opportunity", "stage"),
        idx("Opportunity", "status"),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column("projectId", Text)
    stage: Mapped[Stage] = mapped_column("stage", StageType)
    title: Mapped[str] = mapped_column("title", Text)
    description: Mapped[str] = mapped_column("description", Text)
    budget: Mapped[Any] = mapped_column("budget", Json)
    deadline: Mapped[datetime | None] = mapped_column("deadline", Timestamp3)
    status: Mapped[OpportunityStatus] = mapped_column(
        "status", OpportunityStatusType, default=OpportunityStatus.OPEN, server_default=text("'OPEN'")
    )
    accepted_bid_id: Mapped[str | None] = mapped_column("acceptedBidId", Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    project: Mapped[Project] = relationship()
    accepted_bid: Mapped[Bid | None] = relationship(foreign_keys=[accepted_bid_id], post_update=True)


class Bid(Base):
    __tablename__ = "Bid"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Bid_pkey"),
        fk("Bid", "opportunityId", "Opportunity", nullable=False),
        fk("Bid", "expertId", "User", nullable=False),
        idx("Bid", "opportunityId"),
        idx("Bid", "expertId"),
        idx("Bid", "status"),
    )

    id: Mapped[str] = id_column()
    opportunity_id: Mapped[str] = mapped_column("opportunityId", Text)
    expert_id: Mapped[str] = mapped_column("expertId", Text)
    amount: Mapped[int] = mapped_column("amount")
    currency: Mapped[str] = mapped_column("currency", Text)
    proposal: Mapped[str] = mapped_column("proposal", Text)
    estimated_duration: Mapped[int | None] = mapped_column("estimatedDuration")
    status: Mapped[BidStatus] = mapped_column(
        "status", BidStatusType, default=BidStatus.PENDING, server_default=text("'PENDING'")
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    expert: Mapped[User] = relationship(foreign_keys=[expert_id])


class Story(Base):
    __tablename__ = "Story"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Story_pkey"),
        fk("Story", "projectId", "Project", nullable=False),
        fk("Story", "assignedDevId", "User", nullable=True),
        fk("Story", "assignedQAId", "User", nullable=True),
        idx("Story", "projectId"),
        idx("Story", "assignedDevId"),
        idx("Story", "assignedQAId"),
        idx("Story", "status"),
        idx("Story", "epicNumber"),
        idx("Story", "projectId", "epicNumber", "storyNumber", unique=True),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column("projectId", Text)
    epic_number: Mapped[int] = mapped_column("epicNumber")
    story_number: Mapped[int] = mapped_column("storyNumber")
    title: Mapped[str] = mapped_column("title", Text)
    description: Mapped[str] = mapped_column("description", Text)
    acceptance_criteria: Mapped[str] = mapped_column("acceptanceCriteria", Text)
    priority: Mapped[int] = mapped_column("priority", default=0, server_default=text("0"))
    assigned_dev_id: Mapped[str | None] = mapped_column("assignedDevId", Text)
    assigned_qa_id: Mapped[str | None] = mapped_column("assignedQAId", Text)
    status: Mapped[StoryStatus] = mapped_column(
        "status", StoryStatusType, default=StoryStatus.DRAFT, server_default=text("'DRAFT'")
    )
    dev_pr_url: Mapped[str | None] = mapped_column("devPrUrl", Text)
    dev_pr_number: Mapped[int | None] = mapped_column("devPrNumber")
    dev_pr_author: Mapped[str | None] = mapped_column("devPrAuthor", Text)
    story_file: Mapped[str | None] = mapped_column("storyFile", Text)
    validated_at: Mapped[datetime | None] = mapped_column("validatedAt", Timestamp3)
    validated_by: Mapped[str | None] = mapped_column("validatedBy", Text)
    validation_score: Mapped[int | None] = mapped_column("validationScore")
    qa_gate_path: Mapped[str | None] = mapped_column("qaGatePath", Text)
    qa_gate_status: Mapped[str | None] = mapped_column("qaGateStatus", Text)
    qa_reviewed_at: Mapped[datetime | None] = mapped_column("qaReviewedAt", Timestamp3)
    qa_review_count: Mapped[int] = mapped_column("qaReviewCount", default=0, server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    project: Mapped[Project] = relationship()
    assigned_dev: Mapped[User | None] = relationship(foreign_keys=[assigned_dev_id])
    assigned_qa: Mapped[User | None] = relationship(foreign_keys=[assigned_qa_id])


class Deliverable(Base):
    __tablename__ = "Deliverable"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Deliverable_pkey"),
        fk("Deliverable", "opportunityId", "Opportunity", nullable=True),
        fk("Deliverable", "storyId", "Story", nullable=True),
        fk("Deliverable", "expertId", "User", nullable=False),
        idx("Deliverable", "opportunityId"),
        idx("Deliverable", "storyId"),
        idx("Deliverable", "expertId"),
        idx("Deliverable", "status"),
    )

    id: Mapped[str] = id_column()
    opportunity_id: Mapped[str | None] = mapped_column("opportunityId", Text)
    story_id: Mapped[str | None] = mapped_column("storyId", Text)
    expert_id: Mapped[str] = mapped_column("expertId", Text)
    stage: Mapped[Stage] = mapped_column("stage", StageType)
    pr_url: Mapped[str] = mapped_column("prUrl", Text)
    pr_number: Mapped[int] = mapped_column("prNumber")
    pr_author: Mapped[str] = mapped_column("prAuthor", Text)
    status: Mapped[DeliverableStatus] = mapped_column(
        "status", DeliverableStatusType, default=DeliverableStatus.SUBMITTED, server_default=text("'SUBMITTED'")
    )
    review_notes: Mapped[str | None] = mapped_column("reviewNotes", Text)
    submitted_at: Mapped[datetime] = mapped_column(
        "submittedAt",
        Timestamp3,
        default=utcnow,
        server_default=text("CURRENT_TIMESTAMP"),
    )
    reviewed_at: Mapped[datetime | None] = mapped_column("reviewedAt", Timestamp3)
    approved_at: Mapped[datetime | None] = mapped_column("approvedAt", Timestamp3)


class Escrow(Base):
    __tablename__ = "Escrow"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Escrow_pkey"),
        fk("Escrow", "projectId", "Project", nullable=False),
        fk("Escrow", "opportunityId", "Opportunity", nullable=True),
        fk("Escrow", "clientId", "User", nullable=False),
        fk("Escrow", "expertId", "User", nullable=False),
        idx("Escrow", "projectId"),
        idx("Escrow", "opportunityId"),
        idx("Escrow", "status"),
        idx("Escrow", "contractAddress"),
        idx("Escrow", "blockchain"),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column("projectId", Text)
    opportunity_id: Mapped[str | None] = mapped_column("opportunityId", Text)
    client_id: Mapped[str] = mapped_column("clientId", Text)
    expert_id: Mapped[str] = mapped_column("expertId", Text)
    amount: Mapped[str] = mapped_column("amount", Text)
    currency: Mapped[str] = mapped_column("currency", Text)
    blockchain: Mapped[str] = mapped_column("blockchain", Text)
    platform_fee: Mapped[int] = mapped_column("platformFee")
    status: Mapped[EscrowStatus] = mapped_column(
        "status", EscrowStatusType, default=EscrowStatus.PENDING, server_default=text("'PENDING'")
    )
    contract_address: Mapped[str] = mapped_column("contractAddress", Text)
    transaction_hash: Mapped[str | None] = mapped_column("transactionHash", Text)
    release_transaction_hash: Mapped[str | None] = mapped_column("releaseTransactionHash", Text)
    funded_at: Mapped[datetime | None] = mapped_column("fundedAt", Timestamp3)
    released_at: Mapped[datetime | None] = mapped_column("releasedAt", Timestamp3)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class Document(Base):
    __tablename__ = "Document"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Document_pkey"),
        fk("Document", "projectId", "Project", nullable=False),
        fk("Document", "uploadedById", "User", nullable=False),
        idx("Document", "projectId"),
        idx("Document", "documentType"),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column("projectId", Text)
    uploaded_by_id: Mapped[str] = mapped_column("uploadedById", Text)
    filename: Mapped[str] = mapped_column("filename", Text)
    storage_path: Mapped[str] = mapped_column("storagePath", Text)
    mime_type: Mapped[str] = mapped_column("mimeType", Text)
    size: Mapped[int] = mapped_column("size")
    document_type: Mapped[str] = mapped_column("documentType", Text)
    created_at: Mapped[datetime] = created_at_column()


class Rating(Base):
    __tablename__ = "Rating"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="Rating_pkey"),
        fk("Rating", "projectId", "Project", nullable=False),
        fk("Rating", "expertId", "User", nullable=False),
        fk("Rating", "clientId", "User", nullable=False),
        idx("Rating", "expertId"),
        idx("Rating", "projectId"),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column("projectId", Text)
    expert_id: Mapped[str] = mapped_column("expertId", Text)
    client_id: Mapped[str] = mapped_column("clientId", Text)
    stage: Mapped[Stage] = mapped_column("stage", StageType)
    rating: Mapped[int] = mapped_column("rating")
    feedback: Mapped[str | None] = mapped_column("feedback", Text)
    created_at: Mapped[datetime] = created_at_column()


class ApiKey(Base):
    __tablename__ = "ApiKey"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="ApiKey_pkey"),
        fk("ApiKey", "userId", "User", nullable=False),
        idx("ApiKey", "keyHash", unique=True),
        idx("ApiKey", "userId"),
    )

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = mapped_column("userId", Text)
    name: Mapped[str] = mapped_column("name", Text)
    key_hash: Mapped[str] = mapped_column("keyHash", Text)
    created_at: Mapped[datetime] = created_at_column()
    last_used: Mapped[datetime | None] = mapped_column("lastUsed", Timestamp3)


class MCPSession(Base):
    __tablename__ = "MCPSession"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="MCPSession_pkey"),
        idx("MCPSession", "state", unique=True),
        idx("MCPSession", "state"),
    )

    id: Mapped[str] = id_column()
    state: Mapped[str] = mapped_column("state", Text)
    user_id: Mapped[str | None] = mapped_column("userId", Text)
    access_token: Mapped[str | None] = mapped_column("accessToken", Text)
    expires_at: Mapped[datetime] = mapped_column("expiresAt", Timestamp3)
    created_at: Mapped[datetime] = created_at_column()


class GitHubInstallation(Base):
    __tablename__ = "GitHubInstallation"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="GitHubInstallation_pkey"),
        idx("GitHubInstallation", "installationId", unique=True),
        idx("GitHubInstallation", "installationId"),
    )

    id: Mapped[str] = id_column()
    installation_id: Mapped[int] = mapped_column("installationId")
    account_id: Mapped[int] = mapped_column("accountId")
    account_login: Mapped[str] = mapped_column("accountLogin", Text)
    created_at: Mapped[datetime] = created_at_column()


class StoryAuditLog(Base):
    __tablename__ = "StoryAuditLog"
    __table_args__ = (
        PrimaryKeyConstraint("id", name="StoryAuditLog_pkey"),
        fk("StoryAuditLog", "storyId", "Story", nullable=False),
        idx("StoryAuditLog", "storyId"),
        idx("StoryAuditLog", "createdAt"),
    )

    id: Mapped[str] = id_column()
    story_id: Mapped[str] = mapped_column("storyId", Text)
    user_id: Mapped[str] = mapped_column("userId", Text)
    action: Mapped[str] = mapped_column("action", Text)
    from_status: Mapped[StoryStatus | None] = mapped_column("fromStatus", StoryStatusType)
    to_status: Mapped[StoryStatus | None] = mapped_column("toStatus", StoryStatusType)
    metadata_: Mapped[Any | None] = mapped_column("metadata", Json)
    created_at: Mapped[datetime] = created_at_column()


SEED_TABLES = (
    "User",
    "Project",
    "Opportunity",
    "Bid",
    "Story",
    "Deliverable",
    "Escrow",
    "Document",
    "Rating",
    "ApiKey",
    "MCPSession",
    "GitHubInstallation",
    "StoryAuditLog",
)
SEED_ENUMS = (
    "Role",
    "ProjectStatus",
    "Stage",
    "OpportunityStatus",
    "BidStatus",
    "StoryStatus",
    "DeliverableStatus",
    "EscrowStatus",
)
