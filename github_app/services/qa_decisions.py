"""QA's acceptance from any source (a v4 gate file, TEA's gate-decision.json, the QA's pull request
review): one way to record it, so every source counts once, is authorized the same way, and leaves
`qaGatePath`/`qaGateStatus` saying which source decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.gate_file import GateDecision
from github_app.db.app_tables import GateReview
from github_app.db.models import Story
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain import story_machine as sm
from github_app.services.repo import RepoContext
from github_app.services.stories import apply_decision, audit, snapshot, story_state
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
    reviewer_login: str
    notes: tuple[str, ...] = ()


async def record_qa_decision(
    session: AsyncSession, rc: RepoContext, story: Story, actor: sm.Actor, qa: QaDecision, fields: dict[str, Any]
) -> sm.Decision:
    """Record `qa` on the locked `story`. A refused actor changes no story field; a version already
    recorded counts once; a decision made before the one in force is recorded but does not replace it."""
    state = await story_state(session, story.id)
    decision = sm.decide(await snapshot(session, story), sm.GateRecorded(qa.gate, qa.accepted), actor)
    if isinstance(decision, sm.Refused):
        await apply_decision(session, story, decision, actor, fields)
        state.gate_problem = f"{qa.source}: {decision.reason}"
        await refresh_story_prs(session, story.id, rc.config_problems)
        return decision
    now = utcnow()
    new_review = await insert_if_absent(
        session,
        GateReview.__table__,
        {
            "story_id": story.id,
            "path": qa.source,
            "blob_sha": qa.version,
            "commit_sha": qa.commit_sha,
            "decision": qa.gate.value,
            "accepted": qa.accepted,
            "reason": qa.why,
            "reviewer_login": qa.reviewer_login,
            "committed_at": qa.decided_at,
            "recorded_at": now,
        },
        conflict=["story_id", "path", "blob_sha"],
    )
    if not new_review:
        return sm.NoChange(f"{qa.source} is already recorded")
    story.qa_review_count += 1
    story.qa_gate_path, story.qa_gate_status, story.qa_reviewed_at = qa.source[:1000], qa.gate.value, now
    state.gate_problem = None
    if state.gate_committed_at is not None and qa.decided_at < state.gate_committed_at:
        reason = f"gate {qa.gate} from {qa.source} was made before the gate in force; recorded only"
        audit(session, story, "gate_superseded", actor, {**fields, "reason": reason})
        await refresh_story_prs(session, story.id, rc.config_problems)
        return sm.NoChange(reason)
    state.gate_committed_at = qa.decided_at
    state.gate_note = "; ".join((qa.why, *qa.notes))
    meta = {**fields, "gate": qa.gate.value, "accepted": qa.accepted, "qa_source": qa.source}
    await apply_decision(session, story, decision, actor, meta)
    await refresh_story_prs(session, story.id, rc.config_problems)
    return decision
