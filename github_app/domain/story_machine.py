"""The story and deliverable lifecycles: one state machine, no I/O.

Handlers never set a status themselves. They load a `StorySnapshot`, translate the webhook into an event,
call `decide(story, event, actor)` and store what it returns, audit row included:

- `Transition`: the story's status changes (and perhaps its deliverable's);
- `Recorded`: the status stays, but a fact changed (PR linked, PR merged, gate recorded);
- `NoChange`: nothing to do (a duplicate delivery, an event about another PR, a bot);
- `Refused`: the actor may not do this; `reason` is written for the person on the PR.

Story rules:

from                      event                                   who     to                deliverable
DRAFT                     StoryFileApproved, StoryValidated(GO)   (1)     APPROVED
APPROVED                  DraftPrOpened                           (2)     IN_PROGRESS
APPROVED, IN_PROGRESS     ReadyPrOpened, MarkedReady              (2)     READY_FOR_REVIEW  SUBMITTED
READY_FOR_REVIEW          GateRecorded(FAIL)                      (3)     IN_PROGRESS       CHANGES_REQUESTED
READY_FOR_REVIEW          ConvertedToDraft                        anyone  IN_PROGRESS
READY_FOR_REVIEW          PrClosedUnmerged                        anyone  IN_PROGRESS       REJECTED
READY_FOR_REVIEW          PrMerged, latest gate accepted          anyone  DONE              APPROVED
READY_FOR_REVIEW, merged  GateRecorded, accepted                  (3)     DONE              APPROVED
not DONE, not BLOCKED     Blocked                                 (4)     BLOCKED
BLOCKED                   Unblocked                               (4)     the status before

(1) a user with the PM or ARCHITECT role on the project.
(2) the PR's author must be the story's assigned developer (a marketplace user); the sender may differ.
(3) the assigned QA, or any user with the QA role when none is assigned; never the story's developer.
(4) a user with the PM, ARCHITECT or CLIENT role on the project.

DONE is final: every event on a DONE story is NoChange. Events sent by bots are NoChange.

Delivery order is not guaranteed, so facts are kept even when they do not move the status yet: a gate
recorded before the PR is opened, or a merge whose `ready_for_review` delivery has not arrived (GitHub
cannot merge a draft, so a merge implies the PR was ready). Whichever of merge and accepted gate comes
last completes the story. A PR closed without merge takes its gate with it: the next PR needs a review
of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from github_app.bmad.gate_file import GateDecision
from github_app.bmad.repo_config import DEFAULT_ACCEPTED_GATES
from github_app.domain.vocabulary import DeliverableStatus, Role, StoryStatus

S = StoryStatus
D = DeliverableStatus

APPROVER_ROLES = frozenset({Role.PM, Role.ARCHITECT})
BLOCKER_ROLES = frozenset({Role.PM, Role.ARCHITECT, Role.CLIENT})
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
    # Where Unblocked returns to; the service reads it from the audit row that blocked the story.
    blocked_from: StoryStatus | None = None

    @property
    def label(self) -> str:
        return f"story {self.epic}.{self.story}"


# Events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryFileApproved:
    """A push changed the story file's Status to Approved; the actor is the pusher."""


@dataclass(frozen=True)
class StoryValidated:
    """The validation command: readiness score 1-10 and GO / NO-GO."""

    score: int | None = None
    go: bool = True


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
    pr: PullRequestRef


@dataclass(frozen=True)
class GateRecorded:
    """A valid gate file was pushed; `accepted` comes from `accepted_gate` (repo policy and expiry)."""

    decision: GateDecision
    accepted: bool


@dataclass(frozen=True)
class Blocked:
    reason: str = ""


@dataclass(frozen=True)
class Unblocked:
    pass


Event = (
    StoryFileApproved
    | StoryValidated
    | DraftPrOpened
    | ReadyPrOpened
    | MarkedReady
    | ConvertedToDraft
    | PrClosedUnmerged
    | PrMerged
    | GateRecorded
    | Blocked
    | Unblocked
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
    GATE_RECORDED = "gate_recorded"
    COMPLETED = "completed"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"


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


@dataclass(frozen=True)
class Recorded:
    status: StoryStatus
    action: Action
    reason: str
    after: StorySnapshot
    deliverable_status: DeliverableStatus | None = None
    deliverable_pr: int | None = None


@dataclass(frozen=True)
class NoChange:
    reason: str


@dataclass(frozen=True)
class Refused:
    reason: str


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
    """What `event`, sent by `actor`, does to `story`."""
    if actor.is_bot:
        return NoChange(f"events sent by bots are ignored ({actor.mention})")
    if story.status is S.DONE:
        return NoChange(f"{story.label} is DONE; DONE is final")
    match event:
        case StoryFileApproved():
            return _approve(story, actor, score=None, go=True)
        case StoryValidated(score=score, go=go):
            return _approve(story, actor, score=score, go=go)
        case DraftPrOpened(pr=pr):
            return _opened(story, pr, ready=False)
        case ReadyPrOpened(pr=pr) | MarkedReady(pr=pr):
            return _opened(story, pr, ready=True)
        case ConvertedToDraft(pr=pr):
            return _converted_to_draft(story, pr)
        case PrClosedUnmerged(pr=pr):
            return _closed(story, pr)
        case PrMerged(pr=pr):
            return _merged(story, pr)
        case GateRecorded(decision=decision, accepted=accepted):
            return _gate(story, decision, accepted, actor)
        case Blocked(reason=reason):
            return _block(story, reason, actor)
        case Unblocked():
            return _unblock(story, actor)
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


def _approve(story: StorySnapshot, actor: Actor, *, score: int | None, go: bool) -> Decision:
    if story.status is not S.DRAFT:
        return NoChange(f"{story.label} is {story.status}, not DRAFT; approval changes nothing")
    refusal = _role_refusal(story, actor, APPROVER_ROLES, "approve")
    if refusal is not None:
        return refusal
    if score is not None and not 1 <= score <= 10:
        return Refused(f"the validation score must be from 1 to 10, not {score}")
    scored = f" (readiness {score}/10)" if score is not None else ""
    if not go:
        return NoChange(f"validation of {story.label} said NO-GO{scored}; it stays DRAFT")
    return Transition(
        from_status=story.status,
        to_status=S.APPROVED,
        action=Action.APPROVED,
        reason=f"{story.label} approved by {actor.mention}{scored}",
        after=replace(story, status=S.APPROVED),
    )


def _status_refusal(story: StorySnapshot) -> Refused | None:
    if story.status is S.DRAFT:
        return Refused(f"{story.label} is not approved yet (DRAFT); development starts once it is APPROVED")
    if story.status is S.BLOCKED:
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
    return replace(story, pr_number=pr.number, pr_merged=False, deliverable_status=None)


def _settled(after: StorySnapshot, pr: int | None, reason: str, story: StorySnapshot, action: Action) -> Decision:
    """Move a story under development to where its facts put it: DONE once its PR is merged and its gate
    accepted, READY_FOR_REVIEW once merged or ready."""
    if after.pr_merged and after.gate_accepted:
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


def _closed(story: StorySnapshot, pr: PullRequestRef) -> Decision:
    if story.pr_number != pr.number:
        return _other_pr(story, pr)
    if story.pr_merged:
        return NoChange(f"PR #{pr.number} is already merged")
    after = replace(story, pr_number=None, pr_merged=False, gate=None, gate_accepted=False, deliverable_status=None)
    deliverable = D.REJECTED if story.deliverable_status is not None else None
    reason = f"PR #{pr.number} was closed without merging"
    if story.status is S.READY_FOR_REVIEW:
        back = replace(after, status=S.IN_PROGRESS)
        return _transition(story, back, Action.PR_CLOSED, reason, deliverable, pr.number)
    return Recorded(story.status, Action.PR_CLOSED, reason, after, deliverable, pr.number if deliverable else None)


def _merged(story: StorySnapshot, pr: PullRequestRef) -> Decision:
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
    after = replace(_bound(story, pr), pr_merged=True)
    reason = f"PR #{pr.number} was merged"
    if story.status is S.BLOCKED:
        return Recorded(story.status, Action.PR_MERGED, reason, after)
    if story.status is S.READY_FOR_REVIEW and not after.gate_accepted:
        waiting = f"{reason}; {story.label} waits for an accepted QA gate"
        return Recorded(story.status, Action.PR_MERGED, waiting, after)
    return _settled(after, pr.number, reason, story, Action.PR_MERGED)


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


def _gate(story: StorySnapshot, decision: GateDecision, accepted: bool, actor: Actor) -> Decision:
    refusal = _qa_refusal(story, actor)
    if refusal is not None:
        return refusal
    # Recorded even on a DRAFT story: a gate alone never completes a story, and the latest gate file is
    # what QA said last, whenever it was pushed.
    accepted = accepted and decision is not GateDecision.FAIL
    after = replace(story, gate=decision, gate_accepted=accepted)
    reason = f"gate {decision} recorded by {actor.mention}" + ("" if accepted else " (not accepted)")

    if story.status in _DEVELOPMENT and accepted and after.pr_merged:
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


def _block(story: StorySnapshot, reason: str, actor: Actor) -> Decision:
    refusal = _role_refusal(story, actor, BLOCKER_ROLES, "block")
    if refusal is not None:
        return refusal
    if story.status is S.BLOCKED:
        return NoChange(f"{story.label} is already BLOCKED")
    because = f": {reason}" if reason else ""
    return _transition(
        story,
        replace(story, status=S.BLOCKED, blocked_from=story.status),
        Action.BLOCKED,
        f"{story.label} blocked by {actor.mention}{because}",
    )


def _unblock(story: StorySnapshot, actor: Actor) -> Decision:
    refusal = _role_refusal(story, actor, BLOCKER_ROLES, "unblock")
    if refusal is not None:
        return refusal
    if story.status is not S.BLOCKED:
        return NoChange(f"{story.label} is not BLOCKED")
    if story.blocked_from is None or story.blocked_from in (S.BLOCKED, S.DONE):
        return Refused(
            f"{story.label} was blocked outside this app and its previous status is unknown; "
            f"set its status in the marketplace"
        )
    target = story.blocked_from
    reason = f"{story.label} unblocked by {actor.mention}"
    after = replace(story, blocked_from=None)
    if target in _DEVELOPMENT and story.pr_number is not None:
        if story.pr_merged:
            return _settled(replace(after, status=target), story.pr_number, reason, story, Action.UNBLOCKED)
        if target is S.APPROVED:
            target = S.IN_PROGRESS
    elif target is S.READY_FOR_REVIEW:
        # Its PR was closed while the story was blocked.
        target = S.IN_PROGRESS
    return _transition(story, replace(after, status=target), Action.UNBLOCKED, reason)
