"""QA's acceptance from TEA's gate-decision.json or the QA's pull request review: recorded the way a v4
gate file is (`services.pushes`), so every source counts once, is authorized by the same rules (the
story's QA, who introduced it, never the developer), covers the heads it reviewed, goes through the
same decision and domain events, and leaves `qaGatePath`/`qaGateStatus` saying which source decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.gate_file import GateDecision
from github_app.db.app_tables import GateReview
from github_app.db.enums import StoryStatus
from github_app.db.models import Story
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain import story_machine as sm
from github_app.services.decisions import StoryScope, apply_decision
from github_app.services.repo import RepoContext
from github_app.services.stories import audit, ensure_developer, snapshot, story_state
from github_app.services.views import refresh_story_prs


@dataclass(frozen=True)
class QaDecision:
    gate: GateDecision
    accepted: bool
    why: str
    source: str  # the file's path, or the review's URL: stored in qaGatePath
    version: str  # what makes this decision distinct: a blob sha, or the review id and state
    commit_sha: str
    decided_at: datetime
    reviewed: frozenset[str]  # the commits it covers
    notes: tuple[str, ...] = ()
    expires_at: datetime | None = None  # a v4 gate file's `expires`: the gate stops counting then


def scope_of(rc: RepoContext) -> StoryScope:
    return StoryScope(rc.project, rc.config.default_budget, rc.config_problems)


async def record_qa_decision(
    session: AsyncSession,
    rc: RepoContext,
    story: Story,
    reviewer: sm.Actor,
    qa: QaDecision,
    fields: dict[str, Any],
    carried: str = "",
) -> bool:
    """Record `qa`, said by `reviewer` (who introduced it), on the locked `story`; True when this
    version was recorded as a new review. A refused reviewer changes no story field; a version already
    recorded counts once; a decision made before the one in force is recorded but does not replace it;
    nothing changes a DONE story's review. Every QA source (v4 gate file, gate-decision.json, review)
    goes through here: these are the gate rules."""
    if story.status == StoryStatus.DONE:
        # DONE is final: no gate, whoever pushes it, changes the review it was completed with.
        if not await _known(session, story.id, qa):
            reason = f"gate {qa.gate} from {qa.source} arrived after the story was DONE; the story's review stays"
            audit(session, story, "gate_ignored", None, {**fields, "reason": reason})
        return False
    # The developer is known from the first event on, so that they can never review their own story.
    await ensure_developer(session, story, fields)
    state = await story_state(session, story.id)
    event = sm.GateRecorded(qa.gate, qa.accepted, qa.reviewed, qa.expires_at)
    decision = sm.decide(await snapshot(session, story), event, reviewer)
    if isinstance(decision, sm.Refused):
        # An unauthorized gate changes no story field: only the refusal is on record and on the PR.
        decision = sm.Refused(decision.reason + carried)
        state.gate_problem = f"{qa.source}: {decision.reason}"
        await apply_decision(session, story, decision, reviewer, fields, scope_of(rc))
        return False
    new_review = await insert_if_absent(
        session,
        GateReview.__table__,
        {
            "story_id": story.id,
            "path": qa.source[:1000],
            "blob_sha": qa.version,
            "commit_sha": qa.commit_sha,
            "decision": qa.gate.value,
            "accepted": qa.accepted,
            "reason": qa.why,
            "reviewer_login": reviewer.github_login,
            "committed_at": qa.decided_at,
            "recorded_at": utcnow(),
        },
        conflict=["story_id", "path", "blob_sha"],
    )
    if not new_review:
        return False  # this version is already recorded: a review counts once
    story.qa_review_count += 1
    state.gate_problem = None
    if state.gate_committed_at is not None and qa.decided_at < state.gate_committed_at:
        reason = f"gate {qa.gate} from {qa.source} was made before the gate in force; recorded only"
        audit(session, story, "gate_superseded", reviewer, {**fields, "reason": reason})
        await refresh_story_prs(session, story.id, rc.config_problems)
        return True
    story.qa_gate_path, story.qa_gate_status, story.qa_reviewed_at = qa.source[:1000], qa.gate.value, utcnow()
    state.gate_committed_at = qa.decided_at
    state.gate_note = "; ".join((qa.why, *qa.notes))
    if isinstance(decision, sm.NoChange):
        await refresh_story_prs(session, story.id, rc.config_problems)
        return True
    meta = {**fields, "gate": qa.gate.value, "accepted": qa.accepted, "qa_source": qa.source[:1000]}
    await apply_decision(session, story, decision, reviewer, meta, scope_of(rc))
    return True


async def withdraw_qa_decision(
    session: AsyncSession, rc: RepoContext, story: Story, actor: sm.Actor, source: str, fields: dict[str, Any]
) -> None:
    """The source of the gate in force (a review, dismissed) no longer speaks for QA: the story waits for
    QA again. Another source's gate is not touched; DONE is final."""
    if story.qa_gate_path != source[:1000]:
        return
    decision = sm.decide(await snapshot(session, story), sm.GateWithdrawn(source), actor)
    if isinstance(decision, sm.Recorded | sm.Transition):
        state = await story_state(session, story.id)
        story.qa_gate_status = None
        state.gate_note, state.gate_committed_at = None, None
    await apply_decision(session, story, decision, actor, fields, scope_of(rc))


async def _known(session: AsyncSession, story_id: str, qa: QaDecision) -> bool:
    stmt = select(GateReview.id).where(
        GateReview.story_id == story_id, GateReview.path == qa.source[:1000], GateReview.blob_sha == qa.version
    )
    return (await session.execute(stmt)).first() is not None
