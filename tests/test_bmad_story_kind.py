from __future__ import annotations

import pytest

from github_app.bmad.gate_kind import gate_yaml_text, ids_in_name, is_regular_gate_name
from github_app.bmad.story_kind import kind_from_name, kind_from_title
from github_app.bmad.story_text import atx_heading, read_story_text


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("1.3_validation_report.md", "a report"),
        ("4.5-review-summary.md", "a summary"),
        ("2.1/2.1.appendix.md", "an appendix"),
        ("EPIC-1-SUMMARY.md", "an epic document"),
        ("SPRINT-BACKLOG.md", "a sprint document"),
        ("1.3.qa-report.story.md", "a report"),
        ("1.3.user-login.md", None),
        ("1.3.story.md", None),
        ("3.2.order-summary.md", None),  # a story about a summary screen
        ("3.5.checklist-agent.md", None),
        ("1.1_Story.md", None),
    ],
)
def test_kind_from_name(name: str, kind: str | None) -> None:
    assert kind_from_name(f"docs/stories/{name}") == kind


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        ("Review Summary & Gap Analysis", "a review summary"),
        ("Secure Server API Key Storage - Validation Report", "a validation report"),
        ("Appendix — 3D configurator details", "an appendix"),
        ("Epic 1: Core Booking Management - Summary Document", "an epic document"),
        ("Generate the validation report for admins", None),
        ("Export reports", None),
    ],
)
def test_kind_from_title(title: str, kind: str | None) -> None:
    assert kind_from_title(title) == kind


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("# Story 1.1: X", (1, "Story 1.1: X")),
        ("## Status ##", (2, "Status")),
        ("### C#", (3, "C#")),
        ("   #### x", (4, "x")),
        ("    # code", None),
        ("#hashtag", None),
        ("####### seven", None),
        ("##", (2, "")),
    ],
)
def test_atx_heading(line: str, expected: tuple[int, str] | None) -> None:
    assert atx_heading(line) == expected


def test_status_in_front_matter_table_and_labels() -> None:
    text = (
        "\n---\ntitle: 'Login'\nstatus: Draft\n---\n# Story 1.1: X\n\n| Field | Value |\n|---|---|\n"
        "| **Status** | Done |\n\n## Story Information\n- **Status:** Approved\n\n## QA Results\n**Status:** Done\n"
    )
    parts = read_story_text(text)

    assert parts.front_matter == {"title": "Login", "status": "Draft"}
    assert parts.status_lines == ["Done", "Approved"]  # the QA's own status is not the story's


def test_label_sections_end_at_the_next_label() -> None:
    text = "**Story Statement:**\nAs a user\n\n**Critérios de Aceitação:**\n- a\n- **b:** c\n\n**Notas:**\nx\n"
    parts = read_story_text(text)

    assert parts.part("story").text() == "As a user"  # type: ignore[union-attr]
    assert parts.part("acceptance criteria").text() == "- a\n- **b:** c"  # type: ignore[union-attr]


def test_ids_in_gate_names() -> None:
    assert ids_in_name("docs/qa/gates/14.story-14.3-attribute-deduplication.yml") == [(14, 3)]
    assert ids_in_name("docs/qa/gates/1.10-x.yml") == [(1, 10)]
    assert is_regular_gate_name("docs/qa/gates/1.3.enhance-page-layout.yml")
    assert not is_regular_gate_name("docs/qa/gates/14.story-14.3-x.yml")
    assert not is_regular_gate_name("docs/qa/gates/1.3-login.md")


def test_yaml_of_markdown_gates_and_front_matter() -> None:
    assert gate_yaml_text("g/1.3-x.md", "# Gate\n\n```yaml\ngate: PASS\n```\ntext\n") == "gate: PASS"
    assert gate_yaml_text("g/1.3-x.md", "# Gate 1.3\n\ngate: PASS\n") == "gate: PASS"
    assert gate_yaml_text("g/1.3-x.yml", "---\ngate: PASS\n---\n\n## Notes\n") == "gate: PASS"
    assert gate_yaml_text("g/1.3-x.yml", "---\ngate: PASS\n") == "---\ngate: PASS\n"
