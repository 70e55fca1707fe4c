"""What a pull request shows: the check run's conclusion and summary, and the PR comment."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from github_app.presentation import (
    CHECK_RUN_NAME,
    COMMENT_MARKER,
    FAILURE,
    NEUTRAL,
    PENDING,
    SUCCESS,
    StoryView,
    check_run_payload,
    pr_comment_body,
    truncate,
    web_root,
)

AWAITING_QA = StoryView(
    repository="acme/widgets",
    pr_number=12,
    head_sha="c0ffee" * 6 + "abcd",
    story_label="Story 1.3: User auth",
    story_status="READY_FOR_REVIEW",
    developer="alice",
    qa="bob",
    gate_decision=None,
    gate_accepted=False,
    gate_note=None,
    gate_path=None,
    gate_problem=None,
    merged=False,
    escrow="funded (1500 USDC on polygon)",
    link_problem=None,
    refusal=None,
    config_problems=(),
)
PASSED = replace(AWAITING_QA, gate_decision="PASS", gate_accepted=True, gate_path="docs/qa/gates/1.3-user-auth.yml")
UNLINKED = replace(
    AWAITING_QA,
    story_label=None,
    story_status=None,
    developer=None,
    qa=None,
    escrow="no escrow",
    link_problem="Name the story in the title or body, for example `Story 1.3`.",
)

SITUATIONS = {
    "gate accepted": (PASSED, SUCCESS),
    "waived and accepted": (replace(PASSED, gate_decision="WAIVED", gate_note="WAIVED: hotfix"), SUCCESS),
    "done": (replace(PASSED, story_status="DONE", merged=True, escrow="release requested"), SUCCESS),
    "gate FAIL": (replace(AWAITING_QA, gate_decision="FAIL", gate_path="docs/qa/gates/1.3.yml"), FAILURE),
    "invalid gate file": (replace(AWAITING_QA, gate_problem="gate must be PASS, CONCERNS, FAIL or WAIVED"), FAILURE),
    "unauthorized gate file": (replace(AWAITING_QA, gate_problem="@carol is not the story's QA"), FAILURE),
    "unlinked": (UNLINKED, NEUTRAL),
    "ambiguous": (replace(UNLINKED, link_problem="Both story 1.3 and story 1.4 match: name one."), NEUTRAL),
    # Never green for a PR that does not deliver its story at a head QA accepted.
    "refused": (replace(AWAITING_QA, refusal="@mallory is not the developer assigned to story 1.3"), FAILURE),
    "another PR naming an accepted story": (replace(PASSED, delivers=False, delivering_pr=7), FAILURE),
    "another PR naming a done story": (
        replace(PASSED, story_status="DONE", delivers=False, delivering_pr=7, merged=True),
        FAILURE,
    ),
    "commits after QA's PASS": (replace(PASSED, head_reviewed=False), PENDING),
    "held by a stricter PR on the same head": (replace(UNLINKED, held_by=(7, FAILURE)), FAILURE),
    "not held by a passing PR on the same head": (replace(UNLINKED, held_by=(7, SUCCESS)), NEUTRAL),
    "awaiting QA": (AWAITING_QA, PENDING),
    "merged, awaiting QA": (replace(AWAITING_QA, merged=True), PENDING),
    "CONCERNS not accepted": (
        replace(AWAITING_QA, gate_decision="CONCERNS", gate_note="CONCERNS is not accepted"),
        PENDING,
    ),
    "in progress": (replace(AWAITING_QA, story_status="IN_PROGRESS"), PENDING),
    # A later refused gate file does not undo QA's accepted one.
    "accepted, then a refused gate file": (replace(PASSED, gate_problem="not the story's QA"), SUCCESS),
}


@pytest.mark.parametrize("name", list(SITUATIONS))
def test_conclusion(name: str) -> None:
    view, conclusion = SITUATIONS[name]
    payload = check_run_payload(view)
    if conclusion == PENDING:
        # Still running: a required check holds the merge until QA's gate is accepted.
        assert payload["status"] == "in_progress" and "conclusion" not in payload
    else:
        assert (payload["status"], payload["conclusion"]) == ("completed", conclusion)
    assert payload["name"] == CHECK_RUN_NAME and payload["head_sha"] == view.head_sha
    title = payload["output"]["title"]
    assert title and "\n" not in title


def test_summary_shows_story_people_gate_and_escrow() -> None:
    summary = check_run_payload(PASSED)["output"]["summary"]
    for expected in (
        "Story 1.3: User auth",
        "Ready for review",
        "[@alice](https://github.com/alice)",
        "[@bob](https://github.com/bob)",
        "PASS, accepted",
        "`docs/qa/gates/1.3-user-auth.yml`",
        "funded (1500 USDC on polygon)",
    ):
        assert expected in summary
    assert "| Developer |" in summary and "| QA |" in summary and "| Escrow |" in summary


def test_summary_explains_problems_refusals_and_configuration() -> None:
    view = replace(
        AWAITING_QA,
        refusal="@mallory is not the developer assigned to story 1.3",
        gate_problem="the gate names story 9.9, which does not exist",
        config_problems=("paths.gates: must be a string", "budget: not a number"),
    )
    summary = check_run_payload(view)["output"]["summary"]
    assert "the gate names story 9.9, which does not exist" in summary
    assert "is not the developer assigned to story 1.3" in summary
    assert "`.github/bmad-marketplace.yml` has problems; the defaults apply" in summary
    assert "- paths.gates: must be a string\n- budget: not a number" in summary
    assert "#### Linking" not in summary

    unlinked = check_run_payload(UNLINKED)["output"]
    assert unlinked["title"] == "Not linked to a story"
    assert "Name the story in the title or body" in unlinked["summary"]
    assert "| Story | not linked |" in unlinked["summary"]


def test_names_in_user_text_notify_nobody() -> None:
    refusal = "@mallory is not the developer; ask alice@example.com"
    body = pr_comment_body(replace(AWAITING_QA, refusal=refusal))
    assert "`@mallory` is not the developer" in body
    assert "alice@example.com" in body
    assert not re.search(r"(?<![\[`])@mallory", body)


def test_table_cells_cannot_break_the_table() -> None:
    view = replace(AWAITING_QA, story_label="Story 1.3: A | B\nC <script>")
    summary = check_run_payload(view)["output"]["summary"]
    assert "| Story | Story 1.3: A \\| B C &lt;script> |" in summary


def test_details_url_only_when_given() -> None:
    assert "details_url" not in check_run_payload(AWAITING_QA)
    assert check_run_payload(AWAITING_QA, details_url="https://example.com/s/1")["details_url"] == (
        "https://example.com/s/1"
    )


@pytest.mark.parametrize("name", list(SITUATIONS))
def test_comment_has_the_marker_and_no_time(name: str) -> None:
    view, _ = SITUATIONS[name]
    body = pr_comment_body(view)
    assert body.startswith(COMMENT_MARKER + "\n")
    assert body.count(COMMENT_MARKER) == 1
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}", body)
    # Identical states render identically, so the outbox sends nothing for them.
    assert pr_comment_body(replace(view)) == body
    assert check_run_payload(replace(view)) == check_run_payload(view)


def test_comment_says_what_happens_next() -> None:
    waiting = "Waiting for QA ([@bob](https://github.com/bob)) to commit a gate file for this story at"
    assert f"{waiting} `docs/qa/gates/`." in pr_comment_body(AWAITING_QA)
    done = replace(PASSED, story_status="DONE", merged=True, escrow="release requested")
    assert "Merged and accepted: payment requested." in pr_comment_body(done)
    assert "merging this pull request completes it" in pr_comment_body(PASSED)
    assert "QA requested changes" in pr_comment_body(replace(AWAITING_QA, gate_decision="FAIL"))
    assert "no escrow to release" in pr_comment_body(replace(done, escrow="no escrow"))
    assert "### BMAD story: Story 1.3: User auth" in pr_comment_body(AWAITING_QA)


def test_long_text_is_truncated_to_githubs_limit() -> None:
    view = replace(AWAITING_QA, config_problems=tuple(f"entry {i}: " + "x" * 500 for i in range(400)))
    summary = check_run_payload(view)["output"]["summary"]
    assert len(summary.encode()) <= 65535
    assert summary.endswith("(truncated)")
    body = pr_comment_body(view)
    assert len(body.encode()) <= 65536 and body.startswith(COMMENT_MARKER)

    wide = truncate("€" * 30_000)  # 90,000 bytes: cut on a character boundary
    assert len(wide.encode()) <= 65535 and wide.startswith("€€") and "\ufffd" not in wide
    assert truncate("short") == "short"
    assert len(truncate("y" * 70_000).encode()) == 65535


def test_people_link_to_the_github_the_pull_request_is_on() -> None:
    """GitHub Enterprise Server: profile links go to the PR's own host, never to github.com."""
    view = replace(PASSED, web_url=web_root("https://ghe.example.com/acme/widgets/pull/7"))
    summary = check_run_payload(view)["output"]["summary"]
    assert "[@alice](https://ghe.example.com/alice)" in summary and "[@bob](https://ghe.example.com/bob)" in summary
    assert "github.com" not in summary + pr_comment_body(view)
    for odd in (None, "", "javascript:alert(1)", "https://user:secret@ghe.example.com/a/b/pull/1", "not a url"):
        assert web_root(odd) == "https://github.com"
