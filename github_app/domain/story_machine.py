"""The story and deliverable lifecycles: one state machine, no I/O.

Handlers never set a status themselves. They load a `StorySnapshot`, translate the webhook into an event,
call `decide(story, event, actor)` and store what it returns, audit row included:

- `Transition`: the story's status changes (and perhaps its deliverable's);
- `Recorded`: the status stays, but a fact changed (PR linked, PR merged, gate recorded);
- `NoChange`: nothing to do (a duplicate delivery, an event about another PR, a bot);
- `Refused`: the actor may not do this; `reason` is written for the person on the PR.

Story rules:

from                      event                                   who     to                deliverable
DRAFT                     StoryFileApproved                       (1)     APPROVED
APPROVED                  DraftPrOpened                           (2)     IN_PROGRESS
APPROVED, IN_PROGRESS     ReadyPrOpened, MarkedReady, NewCommits  (2)     READY_FOR_REVIEW  SUBMITTED
READY_FOR_REVIEW          GateRecorded(FAIL)                      (3)     IN_PROGRESS       CHANGES_REQUESTED
READY_FOR_REVIEW          ConvertedToDraft                        anyone  IN_PROGRESS
READY_FOR_REVIEW          PrClosedUnmerged, PrMerged elsewhere    anyone  IN_PROGRESS       REJECTED
READY_FOR_REVIEW          PrMerged at a reviewed head, accepted   anyone  DONE              APPROVED
READY_FOR_REVIEW, merged  GateRecorded, accepted, merged head     (3)     DONE              APPROVED
(any but DONE)            GateWithdrawn                           anyone  (stays)           (stays)

(1) a user with the PM or ARCHITECT role on the project who introduced the Approved status (the
    service passes the author of the file version, not whoever pushed or merged it).
(2) the PR's author must be the story's assigned developer (a marketplace user); the sender may differ.
(3) the assigned QA, or any user with the QA role when none is assigned; never the story's developer;
    the author of the gate file version, not whoever pushed or merged it.

DONE is final: every event on a DONE story is NoChange. A story of a CANCELLED project refuses every
other event, a merge included: nothing moves and nothing is paid for it. Bots are never actors: their events are
NoChange, except a merge, which is a fact whoever performs it (a merge queue, an auto-merge bot).

An accepted gate covers the heads it reviewed (`reviewed_heads`): new commits by anyone but the QA
(`NewCommits`) withdraw the acceptance, and a merge at a head QA did not review does not complete the
story. The QA's own commits on the PR branch (`QaCommitted`) are not a resubmission. What resubmits a
story QA sent back is the developer's: a new push, marking the PR ready, or re-requesting review.

Delivery order is not guaranteed, so facts are kept even when they do not move the status yet: a gate
recorded before the PR is opened, or a merge whose `ready_for_review` delivery has not arrived (GitHub
cannot merge a draft, so a merge implies the PR was ready). Whichever of merge and accepted gate comes
last completes the story. A PR closed without merge takes its gate with it: the next PR needs a review
of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from github_app.bmad.gate_file import GateDecision
from github_app.bmad.repo_config import DEFAULT_ACCEPTED_GATES
from github_app.domain.vocabulary import DeliverableStatus, ProjectStatus, Role, StoryStatus

S = StoryStatus
D = DeliverableStatus

APPROVER_ROLES = frozenset({Role.PM, Role.ARCHITECT})
_DEVELOPMENT = frozenset({S.APPROVED, S.IN_PROGRESS, S.READY_FOR_REVIEW})

# Deliverable lifecycle. A deliverable is created SUBMITTED when its PR is ready for review; it is created
# APPROVED directly when the merge that completes the story arrives before the ready delivery. A reopened
# PR brings its REJECTED deliverable back. APPROVED is final, like DONE.
DELIVERABLE_TRANSITIONS: Mapping[DeliverableStatus | None, frozenset[DeliverableStatus]] = {
    None: frozenset({D.SUBMITTED, D.APPROVED}),
    D.SUBMITTED: frozenset({D.APPROVED, D.CHANGES_REQUESTED, D.REJECTED}),
    D.CHANGES_REQUESTED: frozenset({D.SUBMITTED, D.APPROVED, D.REJECTED}),
    D.REJECTED: frozenset({D.SUBMITTED, D.APPROVED}),
    D.APPROVED: frozenset(),
}


def deliverable_change_allowed(current: DeliverableStatus | None, new: DeliverableStatus) -> bool:
    return new in DELIVERABLE_TRANSITIONS[current]


def _at(login: str) -> str:
    return f"@{login}" if login else "an unknown GitHub user"


@dataclass(frozen=True)
class Actor:
    """Who sent the event. `user_id` is the marketplace user linked to the GitHub login, if any;
    `identity_problem` says why a login that names a marketplace user was not taken as that user (its
    account id differs from the one bound to the user, or several users claim it)."""

    user_id: str | None
    github_login: str
    roles: frozenset[Role] = frozenset()
    is_bot: bool = False
    account_id: int | None = None
    identity_problem: str | None = None

    @property
    def mention(self) -> str:
        return _at(self.github_login)


@dataclass(frozen=True)
class PullRequestRef:
    """The PR an event is about; its author, not the sender, is who delivers the story."""

    number: int
    author_id: str | None
    author_login: str
    author_problem: str | None = None  # as Actor.identity_problem, for the PR's author
    # The PR's head commit when the event happened; None only where heads are not tracked.
    head_sha: str | None = None


@dataclass(frozen=True)
class StorySnapshot:
    """What the machine needs to know about a story. `pr_number` is the PR delivering it (devPrNumber);
    `pr_merged`, `deliverable_status` and the gate describe that PR's progress."""

    epic: int
    story: int
    status: StoryStatus
    assigned_dev_id: str | None = None
    assigned_qa_id: str | None = None
    pr_number: int | None = None
    pr_merged: bool = False
    gate: GateDecision | None = None
    gate_accepted: bool = False
    deliverable_status: DeliverableStatus | None = None
    # The commits the gate in force reviewed, and the head the PR was merged at.
    reviewed_heads: frozenset[str] = frozenset()
    merged_head: str | None = None
    gate_expires_at: datetime | None = None
    # The status a story blocked by a command goes back to when it is unblocked (None: blocked in the
    # marketplace, or not blocked); the score of its last validation.
    blocked_from: StoryStatus | None = None
    validation_score: int | None = None
    project_status: ProjectStatus | None = None

    @property
    def label(self) -> str:
        return f"story {self.epic}.{self.story}"


# Events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryFileApproved:
    """A push changed the story file's Status to Approved; the actor is the pusher."""


@dataclass(frozen=True)
class DraftPrOpened:
    """A draft PR was opened (or reopened) for the story."""

    pr: PullRequestRef


@dataclass(frozen=True)
class ReadyPrOpened:
    """A PR ready for review was opened (or reopened) for the story."""

    pr: PullRequestRef


@dataclass(frozen=True)
class MarkedReady:
    pr: PullRequestRef


@dataclass(frozen=True)
class ConvertedToDraft:
    pr: PullRequestRef


@dataclass(frozen=True)
class PrClosedUnmerged:
    pr: PullRequestRef


@dataclass(frozen=True)
class PrMerged:
    """The PR was merged. `into` is None for the default branch (or a branch the repository names);
    otherwise the branch it went into, which completes nothing. `merged_at` judges the gate's expiry."""

    pr: PullRequestRef
    merged_at: datetime | None = None
    into: str | None = None


@dataclass(frozen=True)
class NewCommits:
    """Commits pushed to the PR by anyone but the story's QA (a synchronize delivery)."""

    pr: PullRequestRef
    ready: bool = True


@dataclass(frozen=True)
class QaCommitted:
    """The story's QA pushed to the PR branch (their gate commit): not a resubmission. `before` is the
    head the push was built on."""

    pr: PullRequestRef
    before: str | None = None


@dataclass(frozen=True)
class GateRecorded:
    """A valid gate file version written by the actor; `accepted` comes from `accepted_gate` (repo
    policy and expiry), `reviewed` are the commits it covers."""

    decision: GateDecision
    accepted: bool
    reviewed: frozenset[str] = frozenset()
    expires_at: datetime | None = None


@dataclass(frozen=True)
class GateWithdrawn:
    """The source of the gate in force no longer speaks for QA (its pull request review was dismissed):
    a fact, whoever dismissed it. The story waits for QA again."""

    source: str


@dataclass(frozen=True)
class Validated:
    """The PM or architect validated the story with `score` out of 10 (a bot command); the repository
    approves a DRAFT from `threshold` on."""

    score: int
    threshold: int


@dataclass(frozen=True)
class Blocked:
    reason: str


@dataclass(frozen=True)
class Unblocked:
    """Back to the status the story had when it was blocked, or where its facts now put it."""


@dataclass(frozen=True)
class Assigned:
    """`user_id` (@`login`, whose marketplace role is `user_role`) becomes the story's developer or QA
    (`as_role`)."""

    as_role: Role
    user_id: str
    login: str
    user_role: Role


Event = (
    StoryFileApproved
    | DraftPrOpened
    | ReadyPrOpened
    | MarkedReady
    | NewCommits
    | QaCommitted
    | ConvertedToDraft
    | PrClosedUnmerged
    | PrMerged
    | GateRecorded
    | GateWithdrawn
    | Validated
    | Blocked
    | Unblocked
    | Assigned
)


# Decisions ----------------------------------------------------------------------------------------


class Action(enum.StrEnum):
    """The audit log's `action` values."""

    APPROVED = "story_approved"
    DEVELOPMENT_STARTED = "development_started"
    PR_LINKED = "pr_linked"
    SUBMITTED_FOR_REVIEW = "submitted_for_review"
    CHANGES_REQUESTED = "changes_requested"
    CONVERTED_TO_DRAFT = "pr_converted_to_draft"
    PR_CLOSED = "pr_closed_unmerged"
    PR_MERGED = "pr_merged"
    PR_MERGED_ELSEWHERE = "pr_merged_outside_default_branch"
    GATE_RECORDED = "gate_recorded"
    GATE_WITHDRAWN = "gate_withdrawn"
    REVIEW_OUTDATED = "review_outdated"
    REVIEW_EXTENDED = "review_extended"
    COMPLETED = "completed"
    VALIDATED = "story_validated"
    BLOCKED = "story_blocked"
    UNBLOCKED = "story_unblocked"
    DEVELOPER_ASSIGNED = "developer_assigned"
    QA_ASSIGNED = "qa_assigned"


# Domain events: what a decision means to the rest of the product. The service records them on the
# decision's audit row and dispatches each once, in the decision's transaction, to its subscribers
# (what GitHub shows, the marketplace publication, the escrow release request).


@dataclass(frozen=True)
class StatusChanged:
    from_status: StoryStatus
    to_status: StoryStatus


@dataclass(frozen=True)
class StoryApproved:
    approved_by: str | None


@dataclass(frozen=True)
class StoryDone:
    pr_number: int | None


@dataclass(frozen=True)
class GateInForce:
    decision: GateDecision
    accepted: bool


@dataclass(frozen=True)
class FactRecorded:
    """The status stays, but something the PRs show changed (PR linked, merge, review outdated)."""

    action: Action


@dataclass(frozen=True)
class ChangeRefused:
    reason: str


DomainEvent = StatusChanged | StoryApproved | StoryDone | GateInForce | FactRecorded | ChangeRefused


@dataclass(frozen=True)
class Transition:
    from_status: StoryStatus
    to_status: StoryStatus
    action: Action
    reason: str
    after: StorySnapshot
    # The new status of the deliverable of PR `deliverable_pr`, or None to leave deliverables alone.
    deliverable_status: DeliverableStatus | None = None
    deliverable_pr: int | None = None
    events: tuple[DomainEvent, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Recorded:
    status: StoryStatus
    action: Action
    reason: str
    after: StorySnapshot
    deliverable_status: DeliverableStatus | None = None
    deliverable_pr: int | None = None
    events: tuple[DomainEvent, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class NoChange:
    reason: str


@dataclass(frozen=True)
class Refused:
    reason: str

    @property
    def events(self) -> tuple[DomainEvent, ...]:
        return (ChangeRefused(self.reason),)


Decision = Transition | Recorded | NoChange | Refused


def apply(story: StorySnapshot, decision: Decision) -> StorySnapshot:
    """The story after `decision`."""
    if isinstance(decision, Transition | Recorded):
        return decision.after
    return story


def accepted_gate(
    decision: GateDecision,
    waiver_active: bool,
    expired: bool,
    accepted_set: frozenset[GateDecision] = DEFAULT_ACCEPTED_GATES,
) -> tuple[bool, str]:
    """Whether a gate counts toward DONE, and why, in words for the check run."""
    if decision is GateDecision.FAIL:
        return False, "gate FAIL: QA asked for changes"
    if expired:
        return False, f"gate {decision} has expired; QA must review again"
    if decision not in accepted_set:
        allowed = ", ".join(sorted(accepted_set))
        return False, f"gate {decision} is not accepted in this repository (accepted: {allowed})"
    if decision is GateDecision.WAIVED and not waiver_active:
        return False, "gate WAIVED has no active waiver"
    return True, f"gate {decision} is accepted"


def decide(story: StorySnapshot, event: Event, actor: Actor) -> Decision:
    """What `event`, sent by `actor`, does to `story`, with the domain events it raises."""
    decision = _decide(story, event, actor)
    if isinstance(decision, Transition | Recorded):
        return replace(decision, events=_events_of(story, event, decision, actor))
    return decision


def _events_of(
    story: StorySnapshot, event: Event, decision: Transition | Recorded, actor: Actor
) -> tuple[DomainEvent, ...]:
    events: list[DomainEvent] = []
    if isinstance(decision, Transition):
        events.append(StatusChanged(decision.from_status, decision.to_status))
        if decision.from_status is S.DRAFT and decision.to_status is S.APPROVED:
            events.append(StoryApproved(actor.user_id))
        if decision.to_status is S.DONE:
            events.append(StoryDone(decision.after.pr_number))
    else:
        events.append(FactRecorded(decision.action))
    if isinstance(event, GateRecorded):
        events.append(GateInForce(event.decision, decision.after.gate_accepted))
    return tuple(events)


def _decide(story: StorySnapshot, event: Event, actor: Actor) -> Decision:
    # A merge is a fact whoever performs it; everything else a bot sends is ignored.
    if actor.is_bot and not isinstance(event, PrMerged):
        return NoChange(f"events sent by bots are ignored ({actor.mention})")
    if story.status is S.DONE:
        return NoChange(f"{story.label} is DONE; DONE is final")
    if story.project_status is ProjectStatus.CANCELLED:
        return Refused(
            f"the project is CANCELLED: {story.label} takes no more changes and nothing is paid for it; "
            "its funded escrow can be refunded to the client"
        )
    match event:
        case StoryFileApproved():
            return _approve(story, actor)
        case DraftPrOpened(pr=pr):
            return _opened(story, pr, ready=False)
        case ReadyPrOpened(pr=pr) | MarkedReady(pr=pr):
            return _opened(story, pr, ready=True)
        case NewCommits(pr=pr, ready=ready):
            return _new_commits(story, pr, ready=ready)
        case QaCommitted(pr=pr, before=before):
            return _qa_committed(story, pr, before, actor)
        case ConvertedToDraft(pr=pr):
            return _converted_to_draft(story, pr)
        case PrClosedUnmerged(pr=pr):
            return _closed(story, pr)
        case PrMerged(pr=pr, merged_at=merged_at, into=into):
            if into is not None:
                return _closed(story, pr, merged_into=into)
            return _merged(story, pr, merged_at)
        case GateRecorded(decision=decision, accepted=accepted, reviewed=reviewed, expires_at=expires_at):
            return _gate(story, decision, accepted, actor, reviewed, expires_at)
        case GateWithdrawn(source=source):
            return _withdrawn(story, source)
        case Validated(score=score, threshold=threshold):
            return _validated(story, score, threshold, actor)
        case Blocked(reason=reason):
            return _blocked(story, reason, actor)
        case Unblocked():
            return _unblocked(story, actor)
        case Assigned():
            return _assigned(story, event, actor)
    raise TypeError(f"not a story event: {event!r}")


# Rules --------------------------------------------------------------------------------------------


def _not_a_user(login: str, identity_problem: str | None = None) -> Refused:
    if identity_problem:
        return Refused(identity_problem)
    return Refused(f"{_at(login)} is not a marketplace user; link this GitHub account to a marketplace account first")


def _role_refusal(story: StorySnapshot, actor: Actor, roles: frozenset[Role], doing: str) -> Refused | None:
    if actor.user_id is None:
        return _not_a_user(actor.github_login, actor.identity_problem)
    if not actor.roles & roles:
        names = sorted(roles)
        needed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        return Refused(f"{actor.mention} cannot {doing} {story.label}: that needs the {needed} role on the project")
    return None


def _approve(story: StorySnapshot, actor: Actor) -> Decision:
    if story.status is not S.DRAFT:
        return NoChange(f"{story.label} is {story.status}, not DRAFT; approval changes nothing")
    refusal = _role_refusal(story, actor, APPROVER_ROLES, "approve")
    if refusal is not None:
        return refusal
    return Transition(
        from_status=story.status,
        to_status=S.APPROVED,
        action=Action.APPROVED,
        reason=f"{story.label} approved by {actor.mention}",
        after=replace(story, status=S.APPROVED),
    )


def _status_refusal(story: StorySnapshot) -> Refused | None:
    if story.status is S.DRAFT:
        return Refused(f"{story.label} is not approved yet (DRAFT); development starts once it is APPROVED")
    if story.status is S.BLOCKED:  # blocked in the marketplace
        return Refused(f"{story.label} is BLOCKED; it must be unblocked before development continues")
    return None


def _can_replace_pr(story: StorySnapshot) -> bool:
    # A merged PR whose gate then FAILed leaves the story IN_PROGRESS; the fix comes in a new PR.
    return story.pr_number is None or (story.pr_merged and story.status is S.IN_PROGRESS)


def _bind_refusal(story: StorySnapshot, pr: PullRequestRef) -> Refused | None:
    if pr.author_id is None:
        return _not_a_user(pr.author_login, pr.author_problem)
    if story.assigned_dev_id is None:
        return Refused(f"{story.label} has no assigned developer yet, so PR #{pr.number} cannot deliver it")
    if pr.author_id != story.assigned_dev_id:
        return Refused(f"{_at(pr.author_login)} is not the developer assigned to {story.label}")
    if story.pr_number not in (None, pr.number) and not _can_replace_pr(story):
        return Refused(
            f"{story.label} is already delivered by PR #{story.pr_number}; close that PR before opening another"
        )
    return None


def _bound(story: StorySnapshot, pr: PullRequestRef) -> StorySnapshot:
    if story.pr_number == pr.number:
        return story
    return replace(story, pr_number=pr.number, pr_merged=False, merged_head=None, deliverable_status=None)


def _head_reviewed(story: StorySnapshot) -> bool:
    """The merged head is one QA's gate in force reviewed (None: heads not tracked by the caller)."""
    return story.merged_head is None or story.merged_head in story.reviewed_heads


def _settled(after: StorySnapshot, pr: int | None, reason: str, story: StorySnapshot, action: Action) -> Decision:
    """Move a story under development to where its facts put it: DONE once its PR is merged and its gate
    accepted, READY_FOR_REVIEW once merged or ready."""
    if after.pr_merged and after.gate_accepted and _head_reviewed(after):
        return _transition(
            story,
            replace(after, status=S.DONE, deliverable_status=D.APPROVED),
            Action.COMPLETED,
            f"{reason}; PR #{pr} is merged and gate {after.gate} is accepted",
            D.APPROVED,
            pr,
        )
    deliverable = None if after.deliverable_status is D.SUBMITTED else D.SUBMITTED
    ready = replace(after, status=S.READY_FOR_REVIEW, deliverable_status=D.SUBMITTED)
    if story.status is S.READY_FOR_REVIEW:
        if ready == story:
            return NoChange(f"{reason}; already recorded")
        return Recorded(ready.status, action, reason, ready, deliverable, pr if deliverable else None)
    return _transition(story, ready, action, reason, deliverable, pr)


def _transition(
    story: StorySnapshot,
    after: StorySnapshot,
    action: Action,
    reason: str,
    deliverable: DeliverableStatus | None = None,
    pr: int | None = None,
) -> Transition:
    return Transition(
        from_status=story.status,
        to_status=after.status,
        action=action,
        reason=reason,
        after=after,
        deliverable_status=deliverable,
        deliverable_pr=pr if deliverable is not None else None,
    )


def _opened(story: StorySnapshot, pr: PullRequestRef, *, ready: bool) -> Decision:
    refusal = _status_refusal(story) or _bind_refusal(story, pr)
    if refusal is not None:
        return refusal
    after = _bound(story, pr)
    if ready:
        reason = f"PR #{pr.number} by {_at(pr.author_login)} is ready for review"
        return _settled(after, pr.number, reason, story, Action.SUBMITTED_FOR_REVIEW)
    if story.status is S.APPROVED:
        return _transition(
            story,
            replace(after, status=S.IN_PROGRESS),
            Action.DEVELOPMENT_STARTED,
            f"draft PR #{pr.number} by {_at(pr.author_login)} started development",
        )
    if after == story:
        return NoChange(f"PR #{pr.number} already delivers {story.label}")
    linked = f"draft PR #{pr.number} now delivers {story.label}"
    return Recorded(story.status, Action.PR_LINKED, linked, after)


def _other_pr(story: StorySnapshot, pr: PullRequestRef) -> NoChange:
    current = f"PR #{story.pr_number}" if story.pr_number is not None else "no PR yet"
    return NoChange(f"PR #{pr.number} is not the PR delivering {story.label} ({current})")


def _converted_to_draft(story: StorySnapshot, pr: PullRequestRef) -> Decision:
    if story.pr_number != pr.number:
        return _other_pr(story, pr)
    if story.status is not S.READY_FOR_REVIEW or story.pr_merged:
        return NoChange(f"PR #{pr.number} was converted to draft; {story.label} stays {story.status}")
    return _transition(
        story,
        replace(story, status=S.IN_PROGRESS),
        Action.CONVERTED_TO_DRAFT,
        f"PR #{pr.number} was converted to draft",
    )


def _closed(story: StorySnapshot, pr: PullRequestRef, merged_into: str | None = None) -> Decision:
    if story.pr_number != pr.number:
        return _other_pr(story, pr)
    if story.pr_merged:
        return NoChange(f"PR #{pr.number} is already merged")
    after = replace(
        story,
        pr_number=None,
        pr_merged=False,
        merged_head=None,
        gate=None,
        gate_accepted=False,
        reviewed_heads=frozenset(),
        gate_expires_at=None,
        deliverable_status=None,
    )
    deliverable = D.REJECTED if story.deliverable_status is not None else None
    if merged_into is None:
        action, reason = Action.PR_CLOSED, f"PR #{pr.number} was closed without merging"
    else:
        # Code merged into some other branch is not delivered: the default branch never received it.
        action = Action.PR_MERGED_ELSEWHERE
        reason = f"PR #{pr.number} was merged into {merged_into}, not the default branch; that completes nothing"
    if story.status is S.READY_FOR_REVIEW:
        back = replace(after, status=S.IN_PROGRESS)
        return _transition(story, back, action, reason, deliverable, pr.number)
    return Recorded(story.status, action, reason, after, deliverable, pr.number if deliverable else None)


def _expired_at(story: StorySnapshot, moment: datetime | None) -> bool:
    return story.gate_expires_at is not None and moment is not None and moment > story.gate_expires_at


def _merged(story: StorySnapshot, pr: PullRequestRef, merged_at: datetime | None = None) -> Decision:
    if story.status is S.DRAFT:
        return Refused(f"PR #{pr.number} was merged, but {story.label} is not approved yet (DRAFT)")
    if story.pr_number == pr.number:
        if story.pr_merged:
            return NoChange(f"the merge of PR #{pr.number} is already recorded")
    elif not _can_replace_pr(story):
        return _other_pr(story, pr)
    else:
        # The merge arrived before the opened / ready delivery that would have linked the PR.
        refusal = _status_refusal(story) or _bind_refusal(story, pr)
        if refusal is not None:
            return refusal
    after = replace(_bound(story, pr), pr_merged=True, merged_head=pr.head_sha)
    reason = f"PR #{pr.number} was merged"
    if after.gate_accepted and _expired_at(after, merged_at):
        # Judged when the story would complete, not only when the gate was pushed.
        after = replace(after, gate_accepted=False)
        reason += f"; gate {after.gate} had expired by then, so QA must review again"
    elif after.gate_accepted and not _head_reviewed(after):
        reason += f" at {(pr.head_sha or '')[:12]}, which QA's gate did not review; QA must review the merged code"
    if story.status is S.BLOCKED:
        return Recorded(story.status, Action.PR_MERGED, reason, after)
    if story.status is S.READY_FOR_REVIEW and not (after.gate_accepted and _head_reviewed(after)):
        waiting = reason if "QA must" in reason else f"{reason}; {story.label} waits for an accepted QA gate"
        return Recorded(story.status, Action.PR_MERGED, waiting, after)
    return _settled(after, pr.number, reason, story, Action.PR_MERGED)


def _new_commits(story: StorySnapshot, pr: PullRequestRef, *, ready: bool) -> Decision:
    """The developer (or anyone but the QA) pushed: a resubmission after changes were requested, and
    the end of any acceptance that did not review this head."""
    outdated = (
        story.pr_number == pr.number
        and story.gate_accepted
        and not story.pr_merged
        and pr.head_sha is not None
        and pr.head_sha not in story.reviewed_heads
    )
    if not outdated:
        return _opened(story, pr, ready=ready)
    refusal = _status_refusal(story) or _bind_refusal(story, pr)
    if refusal is not None:
        return refusal
    after = replace(story, gate_accepted=False)
    reason = (
        f"new commits on PR #{pr.number} ({pr.head_sha[:12] if pr.head_sha else ''}) after QA's gate "
        f"{story.gate}: {story.label} waits for QA to review them"
    )
    if ready and story.status is not S.READY_FOR_REVIEW:
        return _settled(after, pr.number, reason, story, Action.REVIEW_OUTDATED)
    return Recorded(story.status, Action.REVIEW_OUTDATED, reason, after)


def _qa_committed(story: StorySnapshot, pr: PullRequestRef, before: str | None, actor: Actor) -> Decision:
    """QA's own commit on the PR branch (usually the gate file) resubmits nothing. Built on a head QA's
    accepted gate reviewed, it is covered by that review too."""
    if story.pr_number != pr.number:
        return _other_pr(story, pr)
    covered = before is not None and before in story.reviewed_heads and story.gate_accepted
    if not covered or pr.head_sha is None or pr.head_sha in story.reviewed_heads:
        return NoChange(f"{actor.mention} pushed to PR #{pr.number}; QA's own commits are not a resubmission")
    after = replace(story, reviewed_heads=story.reviewed_heads | {pr.head_sha})
    reason = f"{actor.mention} (QA) pushed {pr.head_sha[:12]} on top of the reviewed head"
    return Recorded(story.status, Action.REVIEW_EXTENDED, reason, after)


def _qa_refusal(story: StorySnapshot, actor: Actor) -> Refused | None:
    if actor.user_id is None:
        return _not_a_user(actor.github_login, actor.identity_problem)
    if actor.user_id == story.assigned_dev_id:
        return Refused(f"{actor.mention} is the developer of {story.label} and cannot record its QA gate")
    if story.assigned_qa_id is not None:
        if actor.user_id != story.assigned_qa_id:
            return Refused(f"{actor.mention} is not the QA assigned to {story.label}")
    elif Role.QA not in actor.roles:
        return Refused(f"{actor.mention} cannot record the QA gate of {story.label}: that needs the QA role")
    return None


def _gate(
    story: StorySnapshot,
    decision: GateDecision,
    accepted: bool,
    actor: Actor,
    reviewed: frozenset[str] = frozenset(),
    expires_at: datetime | None = None,
) -> Decision:
    refusal = _qa_refusal(story, actor)
    if refusal is not None:
        return refusal
    # Recorded even on a DRAFT story: a gate alone never completes a story, and the latest gate file is
    # what QA said last, whenever it was pushed.
    accepted = accepted and decision is not GateDecision.FAIL
    after = replace(story, gate=decision, gate_accepted=accepted, reviewed_heads=reviewed, gate_expires_at=expires_at)
    reason = f"gate {decision} recorded by {actor.mention}" + ("" if accepted else " (not accepted)")

    if story.status in _DEVELOPMENT and accepted and after.pr_merged:
        if not _head_reviewed(after):
            reason += "; it does not cover the merged head"
            return Recorded(story.status, Action.GATE_RECORDED, reason, after)
        return _settled(after, story.pr_number, reason, story, Action.GATE_RECORDED)
    if story.status is S.READY_FOR_REVIEW and decision is GateDecision.FAIL:
        after = replace(after, status=S.IN_PROGRESS, deliverable_status=D.CHANGES_REQUESTED)
        change = D.CHANGES_REQUESTED
        return _transition(story, after, Action.CHANGES_REQUESTED, reason, change, story.pr_number)
    if after == story:
        return NoChange(f"gate {decision} is already recorded for {story.label}")
    if story.status is S.READY_FOR_REVIEW:
        reason += "; waiting for the merge" if accepted else "; waiting for an accepted gate"
    return Recorded(story.status, Action.GATE_RECORDED, reason, after)


def _withdrawn(story: StorySnapshot, source: str) -> Decision:
    if story.gate is None:
        return NoChange(f"{story.label} has no gate in force to withdraw")
    after = replace(story, gate=None, gate_accepted=False, reviewed_heads=frozenset(), gate_expires_at=None)
    reason = f"the gate in force ({source}) was withdrawn; {story.label} waits for QA again"
    return Recorded(story.status, Action.GATE_WITHDRAWN, reason, after)


# Commands: validation, blocking, assignment ------------------------------------------------------------


def _validated(story: StorySnapshot, score: int, threshold: int, actor: Actor) -> Decision:
    if story.status is not S.DRAFT:
        return NoChange(f"{story.label} is {story.status}; only a DRAFT story is validated")
    refusal = _role_refusal(story, actor, APPROVER_ROLES, "validate")
    if refusal is not None:
        return refusal
    after = replace(story, validation_score=score)
    if score >= threshold:
        return Transition(
            from_status=story.status,
            to_status=S.APPROVED,
            action=Action.APPROVED,
            reason=f"{story.label} validated by {actor.mention} with score {score}/10 and approved",
            after=replace(after, status=S.APPROVED),
        )
    reason = (
        f"{story.label} validated by {actor.mention} with score {score}/10, below this repository's "
        f"threshold of {threshold}: it stays DRAFT"
    )
    return Recorded(story.status, Action.VALIDATED, reason, after)


def _is_client(actor: Actor) -> bool:
    return Role.CLIENT in actor.roles


def _blocker_refusal(story: StorySnapshot, actor: Actor, doing: str) -> Refused | None:
    if actor.user_id is None:
        return _not_a_user(actor.github_login, actor.identity_problem)
    if _is_client(actor) or Role.PM in actor.roles or actor.user_id == story.assigned_dev_id:
        return None
    return Refused(f"{actor.mention} cannot {doing} {story.label}: only the client, the PM or its developer may")


def _blocked(story: StorySnapshot, reason: str, actor: Actor) -> Decision:
    if story.status is S.BLOCKED:
        return NoChange(f"{story.label} is already BLOCKED")
    refusal = _blocker_refusal(story, actor, "block")
    if refusal is not None:
        return refusal
    after = replace(story, status=S.BLOCKED, blocked_from=story.status)
    return _transition(story, after, Action.BLOCKED, f"{story.label} blocked by {actor.mention}: {reason}")


def _unblocked(story: StorySnapshot, actor: Actor) -> Decision:
    if story.status is not S.BLOCKED:
        return NoChange(f"{story.label} is {story.status}, not BLOCKED")
    refusal = _blocker_refusal(story, actor, "unblock")
    if refusal is not None:
        return refusal
    if story.blocked_from is None:
        return Refused(f"{story.label} was blocked in the marketplace, not by a command: unblock it there")
    back = replace(story, status=story.blocked_from, blocked_from=None)
    reason = f"{story.label} unblocked by {actor.mention}"
    if back.status is S.READY_FOR_REVIEW and back.pr_merged and back.gate_accepted and _head_reviewed(back):
        # Merged and accepted while it was blocked: the facts complete it now.
        return _settled(back, back.pr_number, reason, story, Action.UNBLOCKED)
    return _transition(story, back, Action.UNBLOCKED, f"{reason}; back to {back.status}")


def _assigned(story: StorySnapshot, event: Assigned, actor: Actor) -> Decision:
    if actor.user_id is None:
        return _not_a_user(actor.github_login, actor.identity_problem)
    if not (_is_client(actor) or Role.PM in actor.roles):
        return Refused(f"{actor.mention} cannot assign people to {story.label}: only the client or the PM may")
    who = _at(event.login)
    if event.as_role is Role.DEVELOPER:
        current, other, action = story.assigned_dev_id, story.assigned_qa_id, Action.DEVELOPER_ASSIGNED
    else:
        current, other, action = story.assigned_qa_id, story.assigned_dev_id, Action.QA_ASSIGNED
    if event.user_role is not event.as_role:
        return Refused(f"{who} is a {event.user_role} in the marketplace, not a {event.as_role}")
    if event.user_id == other:
        return Refused(f"{who} cannot be both the developer and the QA of {story.label}")
    if event.user_id == current:
        return NoChange(f"{who} is already the {event.as_role} of {story.label}")
    if event.as_role is Role.DEVELOPER:
        if story.pr_number is not None and not _can_replace_pr(story):
            return Refused(
                f"PR #{story.pr_number} by the current developer delivers {story.label}; it must be closed "
                "before another developer is assigned"
            )
        after = replace(story, assigned_dev_id=event.user_id)
    else:
        if story.gate is not None and story.gate_accepted:
            return Refused(
                f"the current QA's accepted gate is in force on {story.label}; it must be withdrawn before "
                "another QA is assigned"
            )
        after = replace(story, assigned_qa_id=event.user_id)
    return Recorded(story.status, action, f"{who} assigned as the {event.as_role} of {story.label}", after)
