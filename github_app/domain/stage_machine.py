"""The planning stages' deliverables (analyst brief, PM PRD, architect architecture, UX front-end spec):
one state machine, no I/O, built on the story machine's actors, PR references and refusals.

A planning stage is delivered by one pull request at a time, opened by the stage's expert (the expert of
the accepted bid on the stage's Opportunity), reviewed on GitHub by the project's client (or a PM or
architect of the project the client names in the repository configuration; never the expert):

from                     event                                      who       to
(none), REJECTED         StagePrSubmitted                           expert    SUBMITTED
CHANGES_REQUESTED        StagePrSubmitted (new commits)             expert    SUBMITTED
APPROVED, not merged     StagePrSubmitted (new commits)             expert    SUBMITTED (approval of another head)
SUBMITTED, CHANGES_REQ.  StageReviewed(approved) at the PR's head   reviewer  APPROVED
SUBMITTED, APPROVED      StageReviewed(changes) at the PR's head    reviewer  CHANGES_REQUESTED
any but merged           StagePrClosed, merged into another branch  anyone    REJECTED
any                      StagePrMerged into the default branch      anyone    (stays; merge recorded)
APPROVED                 StageReviewDismissed (the approval)        anyone*   SUBMITTED

* a bot too, as for a merge: both are facts whoever performs them.

The stage completes (StageCompleted) once its PR is merged into the default branch AND approved at the
merged head, in either order. A completed stage is final: every later event is NoChange. A CANCELLED
project refuses everything. A review that does not count (wrong person, another head, another PR) is
NoChange with its reason, which the service records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from github_app.domain.story_machine import Actor, NoChange, PullRequestRef, Refused
from github_app.domain.vocabulary import DeliverableStatus, ProjectStatus

D = DeliverableStatus


def _at(login: str) -> str:
    return f"@{login}" if login else "an unknown GitHub user"


@dataclass(frozen=True)
class StageSnapshot:
    """A planning stage of a project, and the deliverable of the PR delivering it (`pr_number`)."""

    stage: str
    project_status: ProjectStatus
    current_stage: str | None
    client_id: str
    expert_id: str | None = None  # the accepted bid's expert, None when no bid is accepted
    reviewer_ids: frozenset[str] = frozenset()  # PMs / architects the client named
    completed: bool = False
    pr_number: int | None = None
    status: DeliverableStatus | None = None
    approved_head: str | None = None
    merged_head: str | None = None  # set once merged into the default branch

    @property
    def label(self) -> str:
        return f"the {self.stage} stage"


# Events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagePrSubmitted:
    """A PR touching the stage's documents was opened, reopened, marked ready or got new commits
    (`new_commits`); `pr.head_sha` is its head now."""

    pr: PullRequestRef
    new_commits: bool = False
    other_stages: tuple[str, ...] = ()  # other planning stages whose documents the PR also changes


@dataclass(frozen=True)
class StageReviewed:
    """A GitHub review of `commit` on PR `pr_number` whose head is now `head`; the actor is the
    review's author."""

    pr_number: int
    commit: str
    head: str
    approved: bool
    notes: str = ""


@dataclass(frozen=True)
class StageReviewDismissed:
    """The review of `commit` on PR `pr_number` was dismissed: an approval it gave no longer stands."""

    pr_number: int
    commit: str


@dataclass(frozen=True)
class StagePrClosed:
    pr: PullRequestRef


@dataclass(frozen=True)
class StagePrMerged:
    """Merged at `pr.head_sha`; `into` is None for the default branch, else the branch it went into."""

    pr: PullRequestRef
    into: str | None = None


StageEvent = StagePrSubmitted | StageReviewed | StageReviewDismissed | StagePrClosed | StagePrMerged


class StageAction(enum.StrEnum):
    """The stage audit log's `action` values."""

    SUBMITTED = "stage_submitted"
    CHANGES_REQUESTED = "stage_changes_requested"
    APPROVED = "stage_approved"
    APPROVAL_OUTDATED = "stage_approval_outdated"
    APPROVAL_DISMISSED = "stage_approval_dismissed"
    REJECTED = "stage_rejected"
    MERGED = "stage_pr_merged"
    COMPLETED = "stage_completed"


# Domain events, dispatched by services.decisions like the story's.


@dataclass(frozen=True)
class DeliverableStatusChanged:
    from_status: DeliverableStatus | None
    to_status: DeliverableStatus


@dataclass(frozen=True)
class StageCompleted:
    stage: str
    pr_number: int
    merged_head: str | None


@dataclass(frozen=True)
class StageFactRecorded:
    action: StageAction


StageDomainEvent = DeliverableStatusChanged | StageCompleted | StageFactRecorded


@dataclass(frozen=True)
class StageChange:
    action: StageAction
    reason: str
    after: StageSnapshot
    review_notes: str | None = None
    events: tuple[StageDomainEvent, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ReviewNotCounted(NoChange):
    """A review that says nothing about the stage (wrong person, another head, another PR); the
    service records why, for the PR's views and the audit trail."""


StageDecision = StageChange | NoChange | Refused


def decide_stage(stage: StageSnapshot, event: StageEvent, actor: Actor) -> StageDecision:
    """What `event`, sent by `actor`, does to `stage`, with the domain events it raises."""
    # A merge and a dismissal are facts whoever performs them (a merge queue, a workflow dismissing
    # stale approvals): GitHub no longer counts a dismissed approval, so neither may the stage.
    if actor.is_bot and not isinstance(event, StagePrMerged | StageReviewDismissed):
        return NoChange(f"events sent by bots are ignored ({actor.mention})")
    if stage.project_status is ProjectStatus.CANCELLED:
        return Refused("the project is CANCELLED: its planning stages take no more deliverables or reviews")
    if stage.completed:
        return NoChange(f"{stage.label} is complete; a completed stage is final")
    decision = _decide(stage, event, actor)
    if isinstance(decision, StageChange):
        return replace(decision, events=_events_of(stage, decision))
    return decision


def _events_of(before: StageSnapshot, change: StageChange) -> tuple[StageDomainEvent, ...]:
    after = change.after
    events: list[StageDomainEvent] = []
    previous = before.status if before.pr_number == after.pr_number else None
    if after.status is not None and (after.status is not previous or before.pr_number != after.pr_number):
        events.append(DeliverableStatusChanged(previous, after.status))
    if after.completed and not before.completed:
        assert after.pr_number is not None
        events.append(StageCompleted(after.stage, after.pr_number, after.merged_head))
    if not events:
        events.append(StageFactRecorded(change.action))
    return tuple(events)


def _decide(stage: StageSnapshot, event: StageEvent, actor: Actor) -> StageDecision:
    match event:
        case StagePrSubmitted(pr=pr, new_commits=new_commits, other_stages=other) if other:
            return Refused(
                f"PR #{pr.number} also changes the documents of the {', '.join(other)} stage; a planning "
                f"deliverable changes only its own stage's documents"
            )
        case StagePrSubmitted(pr=pr, new_commits=new_commits):
            return _submitted(stage, pr, new_commits)
        case StageReviewed():
            return _reviewed(stage, event, actor)
        case StageReviewDismissed(pr_number=number, commit=commit):
            if stage.pr_number != number or stage.status is not D.APPROVED or stage.approved_head != commit:
                return NoChange(f"the dismissed review on PR #{number} is not the approval in force")
            after = replace(stage, status=D.SUBMITTED, approved_head=None)
            return StageChange(StageAction.APPROVAL_DISMISSED, f"the approval of PR #{number} was dismissed", after)
        case StagePrClosed(pr=pr):
            return _rejected(stage, pr, f"PR #{pr.number} was closed without merging")
        case StagePrMerged(pr=pr, into=into):
            if into is not None:
                return _rejected(
                    stage, pr, f"PR #{pr.number} was merged into {into}, not the default branch; that delivers nothing"
                )
            return _merged(stage, pr)
    raise TypeError(f"not a stage event: {event!r}")


def _author_refusal(stage: StageSnapshot, pr: PullRequestRef) -> Refused | None:
    if stage.current_stage != stage.stage:
        current = stage.current_stage or "none"
        return Refused(
            f"PR #{pr.number} changes {stage.label}'s documents, but the project's current stage is {current}"
        )
    if pr.author_id is None:
        if pr.author_problem:
            return Refused(pr.author_problem)
        return Refused(f"{_at(pr.author_login)} is not a marketplace user, so PR #{pr.number} delivers nothing")
    if stage.expert_id is None:
        return Refused(f"{stage.label} has no accepted bid yet, so PR #{pr.number} cannot deliver it")
    if pr.author_id != stage.expert_id:
        return Refused(
            f"{_at(pr.author_login)} is not the expert of the accepted bid on {stage.label}'s opportunity; "
            f"only that expert delivers its documents"
        )
    return None


def _replaceable(stage: StageSnapshot) -> bool:
    """Another PR may take over: none delivers, or the delivering one was rejected, or it was merged
    and then sent back (the fix comes in a new PR)."""
    return (
        stage.pr_number is None
        or stage.status is D.REJECTED
        or (stage.merged_head is not None and stage.status is D.CHANGES_REQUESTED)
    )


def _fresh(stage: StageSnapshot, pr: PullRequestRef) -> StageSnapshot:
    return replace(stage, pr_number=pr.number, status=D.SUBMITTED, approved_head=None, merged_head=None)


def _submitted(stage: StageSnapshot, pr: PullRequestRef, new_commits: bool) -> StageDecision:
    refusal = _author_refusal(stage, pr)
    if refusal is not None:
        return refusal
    by = f"PR #{pr.number} by {_at(pr.author_login)}"
    if stage.pr_number != pr.number:
        if not _replaceable(stage):
            return Refused(f"{stage.label} is already delivered by PR #{stage.pr_number}; close that PR first")
        return StageChange(StageAction.SUBMITTED, f"{by} submits {stage.label}", _fresh(stage, pr))
    if stage.status is D.REJECTED:
        return StageChange(StageAction.SUBMITTED, f"{by} was reopened and submits {stage.label}", _fresh(stage, pr))
    if stage.merged_head is not None:
        return NoChange(f"PR #{pr.number} is already merged")
    if not new_commits:
        return NoChange(f"{by} already delivers {stage.label}")
    if stage.status is D.CHANGES_REQUESTED:
        after = replace(stage, status=D.SUBMITTED, approved_head=None)
        return StageChange(StageAction.SUBMITTED, f"new commits on {by} resubmit {stage.label}", after)
    if stage.status is D.APPROVED and pr.head_sha != stage.approved_head:
        after = replace(stage, status=D.SUBMITTED, approved_head=None)
        reason = (
            f"new commits on PR #{pr.number} ({(pr.head_sha or '')[:12]}) after the approval: "
            f"{stage.label} waits for a review of them"
        )
        return StageChange(StageAction.APPROVAL_OUTDATED, reason, after)
    return NoChange(f"new commits on {by}; {stage.label} stays {stage.status}")


def review_refusal(stage: StageSnapshot, event: StageReviewed, actor: Actor) -> str | None:
    """Why a review does not count, or None when it does."""
    who = actor.mention
    if actor.user_id is None:
        return actor.identity_problem or f"{who} is not a marketplace user"
    if actor.user_id == stage.expert_id:
        return f"{who} is the expert of {stage.label} and cannot review their own deliverable"
    if actor.user_id != stage.client_id and actor.user_id not in stage.reviewer_ids:
        return f"{who} is neither the project's client nor a PM or architect of the project named in stage_reviewers"
    if stage.pr_number != event.pr_number or stage.status is None or stage.status is D.REJECTED:
        delivering = f"PR #{stage.pr_number} does" if stage.pr_number is not None else "no PR does yet"
        return f"PR #{event.pr_number} does not deliver {stage.label} ({delivering})"
    head = stage.merged_head or event.head
    if event.commit != head:
        return (
            f"the review is of commit {event.commit[:7]}, not of the PR's current head {head[:7]}; "
            f"the reviewer must review the current documents"
        )
    return None


def _reviewed(stage: StageSnapshot, event: StageReviewed, actor: Actor) -> StageDecision:
    why_not = review_refusal(stage, event, actor)
    if why_not is not None:
        return ReviewNotCounted(f"review by {actor.mention} does not count: {why_not}")
    if event.approved:
        if stage.status is D.APPROVED and stage.approved_head == event.commit:
            return NoChange(f"{stage.label} is already approved at {event.commit[:7]}")
        after = replace(stage, status=D.APPROVED, approved_head=event.commit)
        reason = f"{stage.label} approved by {actor.mention} at {event.commit[:7]}"
        if after.merged_head == event.commit:
            return StageChange(StageAction.COMPLETED, f"{reason}; PR #{stage.pr_number} is merged", _done(after))
        return StageChange(StageAction.APPROVED, f"{reason}; waiting for the merge", after)
    after = replace(stage, status=D.CHANGES_REQUESTED, approved_head=None)
    reason = f"{actor.mention} requested changes to {stage.label}"
    return StageChange(StageAction.CHANGES_REQUESTED, reason, after, review_notes=event.notes or None)


def _done(stage: StageSnapshot) -> StageSnapshot:
    return replace(stage, completed=True)


def _rejected(stage: StageSnapshot, pr: PullRequestRef, reason: str) -> StageDecision:
    if stage.pr_number != pr.number or stage.status is None:
        return NoChange(f"PR #{pr.number} does not deliver {stage.label}")
    if stage.merged_head is not None:
        return NoChange(f"PR #{pr.number} is already merged")
    if stage.status is D.REJECTED:
        return NoChange(f"PR #{pr.number} is already rejected")
    return StageChange(StageAction.REJECTED, reason, replace(stage, status=D.REJECTED, approved_head=None))


def _merged(stage: StageSnapshot, pr: PullRequestRef) -> StageDecision:
    if stage.pr_number == pr.number and stage.merged_head is not None:
        return NoChange(f"the merge of PR #{pr.number} is already recorded")
    if stage.pr_number != pr.number or stage.status is D.REJECTED:
        # The merge arrived before the delivery that opened the PR (or after its rejection was undone).
        opened = _submitted(stage, pr, new_commits=False)
        if not isinstance(opened, StageChange):
            return opened
        stage = opened.after
    after = replace(stage, merged_head=pr.head_sha or "")
    reason = f"PR #{pr.number} was merged"
    if after.status is D.APPROVED and after.approved_head == after.merged_head:
        return StageChange(StageAction.COMPLETED, f"{reason} and is approved at its head", _done(after))
    if after.status is D.APPROVED:
        # The approval was of another head: what was merged has not been reviewed.
        after = replace(after, status=D.SUBMITTED, approved_head=None)
        reason += (
            f" at {(pr.head_sha or '')[:12]}, which the approval did not cover; "
            "a review of the merged head completes it"
        )
    else:
        reason += f"; {stage.label} completes once the client approves it at {(pr.head_sha or '')[:12]}"
    return StageChange(StageAction.MERGED, reason, after)
