"""What a pull request delivering a planning stage shows: the `BMAD stage` check run and the PR
comment, rendered by the same functions as the story's (presentation.render_check_run/render_comment).
Pure functions of a `StageView`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from github_app.presentation import (
    CHECK_RUN_NAME,
    FAILURE,
    GITHUB_WEB,
    NEUTRAL,
    PENDING,
    SUCCESS,
    Assessment,
    _code,
    _login,
    _plain,
    _who,
    render_check_run,
    render_comment,
    truncate,
)

STAGE_CHECK_RUN_NAME = "BMAD stage"
STAGE_NAMES = {"analyst": "Analyst", "pm": "PM", "architect": "Architect", "ux": "UX"}
_DOCUMENTS = {"analyst": "project brief", "pm": "PRD", "architect": "architecture", "ux": "front-end spec"}


def check_runs_for(*, story_pr: bool, stage_pr: bool) -> frozenset[str]:
    """The one rule for which check runs a PR gets. A PR delivering a planning stage, or refused as
    one, is judged by `BMAD stage` alone: "not linked to a story" says nothing about it. A PR tied to
    a story (linked, a revert) keeps `BMAD story` even when it also touches stage documents."""
    names = {STAGE_CHECK_RUN_NAME} if stage_pr else set()
    if story_pr or not stage_pr:
        names.add(CHECK_RUN_NAME)
    return frozenset(names)


def story_check_superseded(head_sha: str, details_url: str | None = None) -> dict[str, Any]:
    """What a `BMAD story` run GitHub already shows becomes once the PR turns out to be a stage PR:
    GitHub keeps a check run once created, so it is told to point at the stage's run."""
    payload: dict[str, Any] = {
        "name": CHECK_RUN_NAME,
        "head_sha": head_sha,
        "status": "completed",
        "conclusion": NEUTRAL,
        "output": {
            "title": "Planning stage pull request",
            "summary": truncate(
                "**Planning stage pull request**\n\nThis pull request changes planning stage documents and is "
                f"no story's pull request: the `{STAGE_CHECK_RUN_NAME}` check run judges it."
            ),
        },
    }
    if details_url:
        payload["details_url"] = details_url
    return payload


@dataclass(frozen=True)
class StageView:
    repository: str
    pr_number: int
    head_sha: str
    stage: str
    status: str | None  # DeliverableStatus value; None when no Deliverable (refused)
    expert: str | None  # GitHub login of the stage's expert
    client: str | None
    documents: str  # where the stage's documents are
    approved_at_head: bool  # approved at this PR's current (or merged) head
    merged: bool
    completed: bool
    escrow: str
    refusal: str | None
    review_problem: str | None
    review_notes: str | None
    config_problems: tuple[str, ...] = ()
    web_url: str = GITHUB_WEB  # the GitHub the PR is on, for profile links


def assess_stage(view: StageView) -> Assessment:
    """Green only when the stage is accepted at this PR's head (approved there, or completed by it)."""
    label = f"{STAGE_NAMES.get(view.stage, view.stage)} stage"
    if view.refusal is not None:
        return Assessment(
            FAILURE,
            f"{label}: refused",
            f"This pull request changes planning documents but delivers nothing: {_plain(view.refusal)}",
        )
    if view.completed:
        return Assessment(SUCCESS, f"{label}: complete", f"The stage is complete; payment: {_plain(view.escrow)}.")
    if view.status == "REJECTED":
        return Assessment(NEUTRAL, f"{label}: rejected", "Closed without merge: a new or reopened PR submits again.")
    if view.status == "CHANGES_REQUESTED":
        return Assessment(
            FAILURE,
            f"{label}: changes requested",
            "The reviewer asked for changes (notes below); the expert pushes them to resubmit.",
        )
    if view.status == "APPROVED" and view.approved_at_head:
        step = "Approved at this head: merging this pull request completes the stage."
        return Assessment(SUCCESS, f"{label}: approved", step)
    if view.merged:
        return Assessment(
            PENDING,
            f"{label}: merged, waiting for approval",
            f"Merged: the stage completes once {_who(view.client, 'the client', view.web_url)} approves the "
            "merged head.",
        )
    return Assessment(
        PENDING,
        f"{label}: waiting for review",
        f"{_who(view.client, 'The client', view.web_url)} (or a reviewer the client names) reviews this head "
        "on GitHub.",
    )


def _table(view: StageView) -> str:
    rows = [
        ("Stage", f"{STAGE_NAMES.get(view.stage, view.stage)} ({_DOCUMENTS.get(view.stage, '')})"),
        ("Deliverable", _plain((view.status or "none").replace("_", " ").capitalize())),
        ("Expert", _login(view.expert, view.web_url) if view.expert else "no accepted bid"),
        ("Documents", _code(view.documents) if view.documents else "none configured"),
        ("Pull request", "merged" if view.merged else "not merged"),
        ("Escrow", _plain(view.escrow) or "unknown"),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _explanations(view: StageView) -> str:
    sections: list[str] = []
    if view.refusal:
        sections.append(f"#### Refused\n{_plain(view.refusal)}")
    if view.review_notes and view.status == "CHANGES_REQUESTED":
        sections.append(f"#### Review notes\n{_plain(view.review_notes)}")
    if view.review_problem:
        sections.append(f"#### Review not counted\n{_plain(view.review_problem)}")
    if view.config_problems:
        items = "\n".join(f"- {_plain(problem)}" for problem in view.config_problems)
        sections.append(f"#### Configuration\n{items}")
    return "\n\n".join(sections)


def stage_check_run_payload(view: StageView, *, details_url: str | None = None) -> dict[str, Any]:
    found = assess_stage(view)
    return render_check_run(
        STAGE_CHECK_RUN_NAME, view.head_sha, found, _table(view), _explanations(view), details_url=details_url
    )


def stage_comment_body(view: StageView) -> str:
    heading = f"### BMAD stage: {STAGE_NAMES.get(view.stage, view.stage)}"
    return render_comment(heading, assess_stage(view), _table(view), _explanations(view), "the stage")
