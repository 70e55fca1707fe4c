from __future__ import annotations

from collections.abc import Sequence

import pytest

from github_app.domain.linking import (
    Ambiguous,
    Linked,
    LinkLevel,
    LinkResult,
    Unlinked,
    link_pull_request,
    story_mentions,
)


def link(
    title: str = "",
    body: str | None = None,
    branch: str = "main-work",
    files: Sequence[str] = (),
    story_dir: str = "docs/stories",
    pattern: str | None = None,
) -> LinkResult:
    if pattern is None:
        return link_pull_request(title=title, body=body, head_branch=branch, changed_files=files, story_dir=story_dir)
    return link_pull_request(
        title=title,
        body=body,
        head_branch=branch,
        changed_files=files,
        story_dir=story_dir,
        branch_pattern=pattern,
    )


@pytest.mark.parametrize(
    "title",
    [
        "Story 1.3: user auth",
        "Story: 1.3 user auth",
        "story 1.3",
        "STORY 1.3 - user auth",
        "[Story 1.3] user auth",
        "feat: implement story 1.3.",
        "**Story:** 1.3",
        "User story 1.3 done",
        "Story #1.3",
    ],
)
def test_story_named_in_the_title(title: str) -> None:
    assert link(title=title) == Linked(1, 3, LinkLevel.TITLE)


@pytest.mark.parametrize(
    "title",
    [
        "Backstory 1.3",
        "Stories 1.3 and 1.4",
        "Bump version 1.3",
        "Story 1",
        "Story 1.3.1: sub-task",
        "Story 1.3A",
    ],
)
def test_things_that_are_not_story_references(title: str) -> None:
    assert isinstance(link(title=title), Unlinked)


def test_title_wins_over_body_branch_and_files() -> None:
    result = link(
        title="Story 1.3: auth",
        body="Story 2.1",
        branch="story/3.1-x",
        files=["docs/stories/4.1.x.md"],
    )

    assert result == Linked(1, 3, LinkLevel.TITLE)


def test_body_mentioning_a_dependency_does_not_make_a_titled_pr_ambiguous() -> None:
    assert link(title="Story 1.3: auth", body="Builds on Story 1.2.") == Linked(1, 3, LinkLevel.TITLE)


def test_body_is_used_when_the_title_names_nothing() -> None:
    result = link(title="Add login", body="Implements Story: 2.4\n\nAlso tidies CSS.", branch="story/9.9-x")

    assert result == Linked(2, 4, LinkLevel.BODY)


def test_same_story_mentioned_twice_is_not_ambiguous() -> None:
    assert link(title="Story 1.3 and again story 1.3") == Linked(1, 3, LinkLevel.TITLE)


def test_two_stories_in_the_title_are_ambiguous() -> None:
    result = link(title="Story 1.3 + Story 1.4", branch="story/1.3-x")

    assert result == Ambiguous(((1, 3), (1, 4)), LinkLevel.TITLE)


def test_two_stories_in_the_body_are_ambiguous_even_if_the_branch_is_clear() -> None:
    result = link(title="Login", body="Story 1.3\nStory 1.4", branch="story/1.3-x")

    assert result == Ambiguous(((1, 3), (1, 4)), LinkLevel.BODY)


def test_template_comments_in_the_body_are_ignored() -> None:
    body = "<!-- Name the story, e.g. Story: 1.1 -->\nAdds the login page.\n<!-- unclosed Story 9.9"

    assert link(title="Login", body=body, branch="story/2.2-login") == Linked(2, 2, LinkLevel.BRANCH)


@pytest.mark.parametrize("branch", ["story/1.3-user-auth", "feature/1.3.user-auth", "1.3"])
def test_branch_name(branch: str) -> None:
    assert link(title="User auth", branch=branch) == Linked(1, 3, LinkLevel.BRANCH)


def test_branch_naming_two_stories_is_ambiguous() -> None:
    result = link(branch="story/1.3-and-1.4", files=["docs/stories/1.3.x.md"])

    assert result == Ambiguous(((1, 3), (1, 4)), LinkLevel.BRANCH)


def test_custom_branch_pattern() -> None:
    pattern = r"^dev/e(?P<epic>\d+)s(?P<story>\d+)"

    assert link(branch="dev/e2s7-thing", pattern=pattern) == Linked(2, 7, LinkLevel.BRANCH)
    assert isinstance(link(branch="story/2.7-thing", pattern=pattern), Unlinked)


def test_exactly_one_changed_story_file_links() -> None:
    files = ["src/auth.py", "docs/stories/1.3.user-auth.md", "docs/qa/gates/1.3-user-auth.yml"]

    assert link(files=files) == Linked(1, 3, LinkLevel.CHANGED_FILES)


def test_two_files_of_the_same_story_still_link() -> None:
    files = ["docs/stories/1.3.user-auth.md", "docs/stories/1.3-user-auth.md"]

    assert link(files=files) == Linked(1, 3, LinkLevel.CHANGED_FILES)


def test_two_changed_story_files_are_ambiguous() -> None:
    files = ["docs/stories/1.3.user-auth.md", "docs/stories/1.4.logout.md"]

    assert link(files=files) == Ambiguous(((1, 3), (1, 4)), LinkLevel.CHANGED_FILES)


def test_reports_and_summaries_in_the_story_folder_are_not_story_files() -> None:
    files = [
        "docs/stories/1.4.logout.md",
        "docs/stories/1.3_validation_report.md",
        "docs/stories/4.5-review-summary.md",
    ]

    assert link(files=files) == Linked(1, 4, LinkLevel.CHANGED_FILES)


def test_story_files_outside_the_story_folder_do_not_count() -> None:
    files = ["docs/stories-old/1.3.user-auth.md", "README.md", "docs/stories/README.md"]

    assert isinstance(link(files=files), Unlinked)


def test_custom_story_folder() -> None:
    files = ["docs/stories/1.3.a.md", "planning/stories/2.2.b.md"]

    assert link(files=files, story_dir="planning/stories/") == Linked(2, 2, LinkLevel.CHANGED_FILES)


def test_unstorable_ids_are_explained_when_nothing_links() -> None:
    result = link(title="Story 1.3A: auth", files=["docs/stories/3.1b.search.md"])

    assert isinstance(result, Unlinked)
    assert len(result.notes) == 2
    assert "1.3A" in result.notes[0]
    assert "3.1b" in result.notes[1]
    assert "1.3A" in result.describe()


def test_nothing_to_go_on() -> None:
    result = link(title="Fix typo", body=None, branch="fix-typo", files=["src/a.py"])

    assert result == Unlinked()
    assert "Story 1.3" in result.describe()


def test_missing_title_body_and_branch_are_tolerated() -> None:
    result = link_pull_request(title=None, body=None, head_branch=None, changed_files=[], story_dir="docs/stories")

    assert result == Unlinked()


def test_descriptions_name_the_level_and_stories() -> None:
    assert "the branch name" in Linked(1, 3, LinkLevel.BRANCH).describe()
    ambiguous = Ambiguous(((1, 3), (1, 4)), LinkLevel.TITLE).describe()
    assert ambiguous.startswith("The PR title names several stories (1.3, 1.4)")
    assert "Story 1.3" in ambiguous


def test_story_mentions_keeps_order_and_drops_duplicates() -> None:
    found, notes = story_mentions("story 2.1, Story 1.10, story: 2.1, Story 4.4B")

    assert found == [(2, 1), (1, 10)]
    assert len(notes) == 1
