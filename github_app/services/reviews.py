"""pull_request_review: the QA's GitHub review on the story's pull request is QA's gate, for BMAD v4 and
v6 alike. An approval is PASS, "changes requested" is FAIL, a dismissed review withdraws what it said.

It counts only when it is about the PR's current head commit (a review of older code says nothing about
what would be merged), on the PR that delivers the story, and from the story's QA (never its developer);
the reviewer, identified by their GitHub account id, not whoever sent the event, is who speaks. The gate
covers the reviewed commit only: new commits after it need a new review, as with every QA gate.
"Commented" reviews decide nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import sansio
from sqlalchemy import select

from github_app.bmad.gate_file import GateDecision
from github_app.db.app_tables import PullRequestLink
from github_app.db.types import from_github_time, utcnow
from github_app.domain import story_machine as sm
from github_app.handling import HandlerContext
from github_app.services.lock_order import lock_for_pull_request
from github_app.services.people import actor_for
from github_app.services.qa_decisions import QaDecision, record_qa_decision, withdraw_qa_decision
from github_app.services.repo import load_repo_context
from github_app.services.stories import audit, lock_story, story_state
from github_app.services.views import refresh_story_prs

log = logging.getLogger(__name__)

REVIEW_GATES = {"approved": GateDecision.PASS, "changes_requested": GateDecision.FAIL}
NOT_COUNTED = "qa_review_not_counted"


def review_url(review: dict[str, Any], pr: dict[str, Any]) -> str:
    url = review.get("html_url")
    if isinstance(url, str) and url:
        return url
    return f"{pr.get('html_url') or ''}#pullrequestreview-{review.get('id')}"


async def handle_pull_request_review(ctx: HandlerContext, event: sansio.Event) -> None:
    data = event.data
    action = data.get("action")
    if action not in ("submitted", "dismissed"):
        return
    review = data.get("review") or {}
    pr = data.get("pull_request") or {}
    reviewer = review.get("user") or {}
    sender = data.get("sender") or {}
    if reviewer.get("type") == "Bot" or sender.get("type") == "Bot":
        return
    state = str(review.get("state") or "").lower()
    if action == "submitted" and state not in REVIEW_GATES:
        return  # a comment-only review decides nothing
    rc = await load_repo_context(ctx, data)
    if rc is None or "review" not in rc.config.qa_sources:
        return
    session = ctx.session
    number = pr.get("number")
    if not isinstance(number, int):
        return
    # Locks in the one order: the story, then this PR's link.
    await lock_for_pull_request(session, rc, pr)
    stmt = (
        select(PullRequestLink)
        .where(PullRequestLink.repository_key == rc.repository.lower(), PullRequestLink.pr_number == number)
        .with_for_update()
    )
    link = (await session.execute(stmt)).scalars().first()
    if link is None or link.story_id is None:
        log.info("review on a pull request linked to no story", extra={"repository": rc.repository})
        return
    story = await lock_story(session, link.story_id)
    url = review_url(review, pr)
    fields = {
        "delivery_id": ctx.delivery_id,
        "event": f"pull_request_review.{action}",
        "repository": rc.repository,
        "pr_number": link.pr_number,
        "commit_sha": review.get("commit_id"),
        "review_url": url,
    }

    if action == "dismissed":
        actor = await actor_for(session, rc.project, sender.get("login") or "", sender.get("type"), sender.get("id"))
        await withdraw_qa_decision(session, rc, story, actor, url, fields)
        return

    # The review's author is who speaks (authenticated, by account id), not whoever sent the event.
    actor = await actor_for(session, rc.project, reviewer.get("login") or "", reviewer.get("type"), reviewer.get("id"))
    # The PR's head as the newest event shows it: this delivery's own copy of the PR may be newer.
    payload_head = (pr.get("head") or {}).get("sha")
    payload_updated = from_github_time(pr.get("updated_at"))
    head = link.head_sha
    if payload_head and (link.pr_updated_at is None or (payload_updated and payload_updated >= link.pr_updated_at)):
        head = payload_head
    commit = review.get("commit_id")
    why_not = None
    if story.dev_pr_number != link.pr_number:
        delivering = f"PR #{story.dev_pr_number} does" if story.dev_pr_number is not None else "no PR does yet"
        why_not = f"PR #{link.pr_number} does not deliver the story ({delivering})"
    elif not isinstance(commit, str) or commit != head:
        why_not = (
            f"the review is of commit {str(commit)[:7]}, not of the PR's current head {str(head)[:7]}; "
            f"QA must review the current code"
        )
    if why_not is not None:
        reason = f"review by {actor.mention} does not count: {why_not}"
        audit(session, story, NOT_COUNTED, actor, {**fields, "reason": reason})
        (await story_state(session, story.id)).gate_problem = reason
        await refresh_story_prs(session, story.id, rc.config_problems)
        return

    assert isinstance(commit, str)
    gate = REVIEW_GATES[state]
    accepted, why = sm.accepted_gate(gate, False, False, rc.config.accepted_gates)
    qa = QaDecision(
        gate=gate,
        accepted=accepted,
        why=f"review {state.replace('_', ' ')}: {why}",
        source=url,
        version=f"review:{review.get('id')}:{state}",
        commit_sha=commit,
        decided_at=from_github_time(review.get("submitted_at")) or utcnow(),
        reviewed=frozenset({commit}),  # a review is of exactly the commit it names
    )
    await record_qa_decision(session, rc, story, actor, qa, fields)
