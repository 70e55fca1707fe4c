"""The seed's eight enums, as stored: the domain's vocabulary, whose member values are the labels the
seed schema stores, so the database maps it one to one."""

from github_app.domain.vocabulary import (
    BidStatus,
    DeliverableStatus,
    EscrowStatus,
    OpportunityStatus,
    ProjectStatus,
    Role,
    Stage,
    StoryStatus,
)

__all__ = [
    "BidStatus",
    "DeliverableStatus",
    "EscrowStatus",
    "OpportunityStatus",
    "ProjectStatus",
    "Role",
    "Stage",
    "StoryStatus",
]
