from __future__ import annotations

import pytest

from github_app.bmad.story_file import (
    BmadFileError,
    NotAStory,
    StoryFileStatus,
    StoryIdError,
    is_story_path,
    parse_story_file,
    parse_story_status,
    story_id_from_path,
)

TEMPLATE = """# Story 2.1: Re-implement the XP Engine

## Status
Done

## Story
**As a** system,
**I want** the new V2 XP Engine built,
**so that** user progression can be accurately calculated and stored.

## Acceptance Criteria
1. The ProgressionService is built with a method add_xp(user_id, amount, category)
2. XP totals are stored per category

## Tasks / Subtasks
- [x] Task 1: build the service (AC: 1)

## Dev Notes
Nothing unusual.

## Change Log
| Date | Version | Description | Author |
|------|---------|-------------|--------|
| 2024-12-01 | 1.0 | First draft | Bob |

## QA Results
"""


def story_with_status(status_line: str) -> str:
    return f"# Story 1.3: Login\n\n## Status\n{status_line}\n\n## Story\nAs a user\n\n## Acceptance Criteria\n1. ok\n"


def test_template_story_is_read_completely() -> None:
    doc = parse_story_file("docs/stories/2.1.xp-engine.md", TEMPLATE)

    assert (doc.epic, doc.story) == (2, 1)
    assert doc.title == "Re-implement the XP Engine"
    assert doc.status is StoryFileStatus.DONE
    assert doc.status_raw == "Done"
    assert doc.description.startswith("**As a** system,")
    assert doc.description.endswith("calculated and stored.")
    assert doc.acceptance_criteria == (
        "1. The ProgressionService is built with a method add_xp(user_id, amount, category)\n"
        "2. XP totals are stored per category"
    )
    assert doc.problems == ()


def test_sections_after_acceptance_criteria_do_not_leak_into_it() -> None:
    doc = parse_story_file("docs/stories/2.1.xp-engine.md", TEMPLATE)

    assert "Task 1" not in doc.acceptance_criteria
    assert "Change Log" not in doc.acceptance_criteria


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Draft", StoryFileStatus.DRAFT),
        ("Approved", StoryFileStatus.APPROVED),
        ("InProgress", StoryFileStatus.IN_PROGRESS),
        ("In Progress", StoryFileStatus.IN_PROGRESS),
        ("in-progress", StoryFileStatus.IN_PROGRESS),
        ("Review", StoryFileStatus.REVIEW),
        ("Ready for Review", StoryFileStatus.REVIEW),
        ("ReadyForReview", StoryFileStatus.REVIEW),
        ("Done", StoryFileStatus.DONE),
        ("Ready for Development", StoryFileStatus.APPROVED),
        ("**Done**", StoryFileStatus.DONE),
        ("✅ Done", StoryFileStatus.DONE),
        ("🚧 **In Progress**", StoryFileStatus.IN_PROGRESS),
        ("Done - all tasks complete", StoryFileStatus.DONE),
        ("Approved (validated by PO, score 9/10)", StoryFileStatus.APPROVED),
        ("DRAFT", StoryFileStatus.DRAFT),
        ("Completed", StoryFileStatus.DONE),
    ],
)
def test_status_spellings_found_in_real_files_are_mapped(line: str, expected: StoryFileStatus) -> None:
    doc = parse_story_file("docs/stories/1.3.login.md", story_with_status(line))

    assert doc.status is expected
    assert doc.status_raw == line
    assert doc.problems == ()


@pytest.mark.parametrize("line", ["Blocked", "Not Done", "TBD", "QA Approved ✅", "Reviewed by nobody", "Ready"])
def test_unmappable_status_is_reported_not_guessed(line: str) -> None:
    doc = parse_story_file("docs/stories/1.3.login.md", story_with_status(line))

    assert doc.status is None
    assert doc.status_raw == line
    assert len(doc.problems) == 1
    assert repr(line) in doc.problems[0]
    assert "Draft, Approved, InProgress, Review, Done" in doc.problems[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("草稿", StoryFileStatus.DRAFT),
        ("已批准", StoryFileStatus.APPROVED),
        ("进行中", StoryFileStatus.IN_PROGRESS),
        ("待审查", StoryFileStatus.REVIEW),
        ("已完成", StoryFileStatus.DONE),
        ("完了", StoryFileStatus.DONE),
        ("レビュー", StoryFileStatus.REVIEW),
        ("Status: Approved", StoryFileStatus.APPROVED),
        ("", None),
        ("未完成", None),
    ],
)
def test_status_values_in_translated_files(raw: str, expected: StoryFileStatus | None) -> None:
    assert parse_story_status(raw) is expected


def test_file_name_with_dash_after_story_number() -> None:
    doc = parse_story_file("docs/stories/1.3-user-auth.md", story_with_status("Draft"))

    assert (doc.epic, doc.story) == (1, 3)


def test_heading_supplies_numbers_when_file_name_has_none() -> None:
    text = "# Story 4.12: Export reports\n\n## Status\nDraft\n\n## Story\nx\n\n## Acceptance Criteria\n1. y\n"

    doc = parse_story_file("docs/stories/export-reports.md", text)

    assert (doc.epic, doc.story) == (4, 12)
    assert doc.title == "Export reports"


def test_file_name_wins_over_a_disagreeing_heading_and_says_so() -> None:
    text = story_with_status("Draft").replace("Story 1.3", "Story 1.4")

    doc = parse_story_file("docs/stories/1.3.login.md", text)

    assert (doc.epic, doc.story) == (1, 3)
    assert any("1.3" in p and "1.4" in p for p in doc.problems)


@pytest.mark.parametrize("name", ["1.3A.login.md", "3.1b-search.md"])
def test_letter_suffix_in_file_name_cannot_be_stored(name: str) -> None:
    with pytest.raises(StoryIdError) as caught:
        parse_story_file(f"docs/stories/{name}", story_with_status("Draft"))

    message = str(caught.value)
    assert caught.value.story_id in message
    assert caught.value.story_id in ("1.3A", "3.1b")
    assert "integers" in message
    assert caught.value.path == f"docs/stories/{name}"


def test_letter_suffix_in_heading_cannot_be_stored_when_the_name_has_no_id() -> None:
    text = story_with_status("Draft").replace("Story 1.3", "Story 1.3A")

    with pytest.raises(StoryIdError, match="1.3A"):
        parse_story_file("docs/stories/login.md", text)


def test_letter_suffix_in_heading_is_only_a_problem_when_the_name_is_storable() -> None:
    text = story_with_status("Draft").replace("Story 1.3", "Story 1.3A")

    doc = parse_story_file("docs/stories/1.3.login.md", text)

    assert (doc.epic, doc.story) == (1, 3)
    assert any("1.3A" in p for p in doc.problems)


def test_three_part_id_cannot_be_stored() -> None:
    with pytest.raises(StoryIdError, match="1.3.1"):
        parse_story_file("docs/stories/1.3.1.login.md", story_with_status("Draft"))


def test_story_id_errors_are_bmad_file_errors_and_value_errors() -> None:
    with pytest.raises(BmadFileError):
        parse_story_file("docs/stories/1.3A.login.md", "")
    with pytest.raises(ValueError):
        parse_story_file("docs/stories/1.3A.login.md", "")


def test_no_story_number_anywhere_is_a_clear_error() -> None:
    with pytest.raises(BmadFileError, match=r"no story number") as caught:
        parse_story_file("docs/stories/notes.md", "# Some notes\n\n## Status\nDraft\n")

    assert not isinstance(caught.value, StoryIdError)
    assert "1.3.user-login.md" in str(caught.value)


def test_chinese_template_headings() -> None:
    text = (
        "# 故事 1.2: 用户登录\n\n## 状态\n已批准\n\n## 故事\n**作为**用户，**我想要**登录\n\n"
        "## 验收标准\n1. 可以登录\n2. 错误密码被拒绝\n\n## 任务 / 子任务\n- [ ] 任务 1\n"
    )

    doc = parse_story_file("docs/stories/1.2.login.md", text)

    assert doc.title == "用户登录"
    assert doc.status is StoryFileStatus.APPROVED
    assert doc.description == "**作为**用户，**我想要**登录"
    assert doc.acceptance_criteria == "1. 可以登录\n2. 错误密码被拒绝"
    assert doc.problems == ()


def test_japanese_template_headings() -> None:
    text = (
        "# ストーリー 3.1: 検索\n\n## ステータス\n進行中\n\n## ストーリー\nユーザーとして検索したい\n\n"
        "## 受け入れ基準\n1. 検索できる\n"
    )

    doc = parse_story_file("docs/stories/3.1.search.md", text)

    assert doc.title == "検索"
    assert doc.status is StoryFileStatus.IN_PROGRESS
    assert doc.description == "ユーザーとして検索したい"
    assert doc.acceptance_criteria == "1. 検索できる"


def test_bilingual_heading_is_recognised() -> None:
    text = "# Story 1.1: X\n\n## 状态 (Status)\nDraft\n\n## Story / 故事\nA\n\n## 验收标准 | Acceptance Criteria\nB\n"

    doc = parse_story_file("docs/stories/1.1.x.md", text)

    assert doc.status is StoryFileStatus.DRAFT
    assert (doc.description, doc.acceptance_criteria) == ("A", "B")


def test_korean_template_headings() -> None:
    text = "# 스토리 1.1: 로그인\n\n## 상태\n초안\n\n## 스토리\n사용자로서\n"

    doc = parse_story_file("docs/stories/1.1.login.md", text)

    assert (doc.epic, doc.story, doc.title) == (1, 1, "로그인")
    assert doc.status is StoryFileStatus.DRAFT
    assert doc.description == "사용자로서"
    assert doc.problems == ("no '## Acceptance Criteria' section",)


def test_unknown_language_does_not_crash_and_is_not_taken_for_a_story() -> None:
    text = "# เรื่อง 1.1: เข้าสู่ระบบ\n\n## สถานะ\nร่าง\n\n## เรื่องราว\nในฐานะผู้ใช้\n"

    with pytest.raises(NotAStory, match="none of a story's sections"):
        parse_story_file("docs/stories/1.1.login.md", text)


def test_status_written_on_the_heading_line() -> None:
    text = "# Story 1.1: X\n\n## Status: In Progress\n\n## Story\nA\n\n## Acceptance Criteria\nB\n"

    doc = parse_story_file("docs/stories/1.1.x.md", text)

    assert doc.status is StoryFileStatus.IN_PROGRESS
    assert doc.status_raw == "In Progress"


def test_status_line_under_the_title_in_older_files() -> None:
    text = "# Story 1.1: X\n\n**Status:** Approved\n\n## Story\nA\n\n## Acceptance Criteria\nB\n"

    doc = parse_story_file("docs/stories/1.1.x.md", text)

    assert doc.status is StoryFileStatus.APPROVED


def test_headings_inside_code_blocks_are_text() -> None:
    text = (
        "# Story 1.1: X\n\n## Status\nDraft\n\n## Story\nExample:\n```md\n## Status\nDone\n```\n\n"
        "## Acceptance Criteria\nB\n"
    )

    doc = parse_story_file("docs/stories/1.1.x.md", text)

    assert doc.status is StoryFileStatus.DRAFT
    assert "## Status\nDone" in doc.description


def test_level_three_headings_stay_inside_their_section() -> None:
    text = "# Story 1.1: X\n\n## Status\nDraft\n\n## Story\nA\n\n## Acceptance Criteria\n### Login\n1. a\n"

    doc = parse_story_file("docs/stories/1.1.x.md", text)

    assert doc.acceptance_criteria == "### Login\n1. a"


def test_windows_line_endings_and_byte_order_mark() -> None:
    text = "\ufeff" + story_with_status("Approved").replace("\n", "\r\n")

    doc = parse_story_file("docs/stories/1.3.login.md", text)

    assert doc.title == "Login"
    assert doc.status is StoryFileStatus.APPROVED
    assert doc.acceptance_criteria == "1. ok"


def test_missing_title_falls_back_to_the_file_name() -> None:
    doc = parse_story_file("docs/stories/1.3.user-login_flow.md", "## Status\nDraft\n")

    assert doc.title == "user login flow"
    assert any("title" in p for p in doc.problems)


def test_empty_file_with_a_numbered_name_is_not_a_story() -> None:
    with pytest.raises(NotAStory):
        parse_story_file("docs/stories/5.2.md", "")


def test_a_numbered_file_with_only_a_status_is_usable_with_problems() -> None:
    doc = parse_story_file("docs/stories/5.2.md", "## Status\nDraft\n")

    assert (doc.epic, doc.story, doc.title) == (5, 2, "Story 5.2")
    assert doc.status is StoryFileStatus.DRAFT
    assert not doc.title_found
    assert len(doc.problems) == 3


@pytest.mark.parametrize(
    ("path", "story_dir", "expected"),
    [
        ("docs/stories/1.3.login.md", "docs/stories", True),
        ("docs/stories/1.3.login.md", "./docs/stories/", True),
        ("docs/stories/epic-1/1.3.login.md", "docs/stories", True),
        ("docs/stories/login.md", "docs/stories", True),
        ("docs/stories/1.3.login.MD", "docs/stories", True),
        ("docs/stories/README.md", "docs/stories", False),
        ("docs/stories/1.3.login.txt", "docs/stories", False),
        ("docs/stories-old/1.3.login.md", "docs/stories", False),
        ("docs/Stories/1.3.login.md", "docs/stories", False),
        ("src/docs/stories/1.3.login.md", "docs/stories", False),
        ("docs/stories", "docs/stories", False),
        ("stories/1.3.login.md", "stories", True),
    ],
)
def test_is_story_path(path: str, story_dir: str, expected: bool) -> None:
    assert is_story_path(path, story_dir) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("docs/stories/1.3.login.md", (1, 3)),
        ("docs/stories/1.3-login.md", (1, 3)),
        ("docs/stories/12.40.md", (12, 40)),
        ("docs/stories/1.3.2fa-login.md", (1, 3)),
        ("docs/stories/login.md", None),
        ("docs/stories/story-1.3.md", None),
    ],
)
def test_story_id_from_path(path: str, expected: tuple[int, int] | None) -> None:
    assert story_id_from_path(path) == expected


def test_story_id_from_path_rejects_unstorable_ids() -> None:
    with pytest.raises(StoryIdError):
        story_id_from_path("docs/stories/1.3A.login.md")
