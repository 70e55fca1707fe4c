"""The domain's vocabulary: roles and the statuses of projects, opportunities, bids, stories,
deliverables and escrows. Member values are the labels the seed schema stores."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    CLIENT = "CLIENT"
    ANALYST = "ANALYST"
    PM = "PM"
    ARCHITECT = "ARCHITECT"
    UX = "UX"
    DEVELOPER = "DEVELOPER"
    QA = "QA"


class ProjectStatus(enum.StrEnum):
    PLANNING = "PLANNING"
    IN_DEVELOPMENT = "IN_DEVELOPMENT"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class Stage(enum.StrEnum):
    analyst = "analyst"
    pm = "pm"
    architect = "architect"
    ux = "ux"
    developer = "developer"
    qa = "qa"


class OpportunityStatus(enum.StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    COMPLETED = "COMPLETED"


class BidStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    WITHDRAWN = "WITHDRAWN"


class StoryStatus(enum.StrEnum):
    DRAFT = "DRAFT"
    APPROVED = "APPROVED"
    IN_PROGRESS = "IN_PROGRESS"
    READY_FOR_REVIEW = "READY_FOR_REVIEW"
    DONE = "DONE"
    BLOCKED = "BLOCKED"


class DeliverableStatus(enum.StrEnum):
    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    REJECTED = "REJECTED"


class EscrowStatus(enum.StrEnum):
    PENDING = "PENDING"
    FUNDED = "FUNDED"
    RELEASED = "RELEASED"
    REFUNDED = "REFUNDED"
