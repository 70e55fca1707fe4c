"""Which story a pull request delivers.

Levels, in order; the first level that names any story decides:

1. the PR title: `Story 1.3` or `Story: 1.3` (any case, markdown emphasis allowed);
2. the PR body, the same way (HTML comments are skipped: PR templates keep examples there);
3. the head branch name, with the repository's branch pattern (`story/1.3-user-auth`);
4. the changed files, when they contain exactly one story file.

Title and body are separate levels so that a PR titled "Story 1.3: login" whose body says "follows
Story 1.2" is linked to 1.3 instead of being ambiguous. Two different stories at the deciding level give
`Ambiguous`: the app does not guess, it asks the author to name the story.

Story ids the marketplace cannot store (`1.3A`, `1.3.1`, numbers above 2^31-1) never link; they are
reported in the notes.

Titles, bodies and branch names come from any PR author, forks included, so every pattern applied to
them runs in time linear in the text, and only the first `MAX_TEXT_CHARS` of each are read (GitHub's own
limit for a PR body).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from github_app.bmad.repo_config import DEFAULT_BRANCH_PATTERN, BranchPattern, story_ids_in_branch
from github_app.bmad.story_file import StoryIdError, is_story_path, story_id_from_path
from github_app.bmad.story_kind import kind_from_name
from github_app.bounded import MAX_STORY_NUMBER, clip, storable_number

StoryId = tuple[int, int]


class LinkLevel(enum.StrEnum):
    TITLE = "title"
    BODY = "body"
    BRANCH = "branch"
    CHANGED_FILES = "changed_files"


_LEVEL_WORDS = {
    LinkLevel.TITLE: "the PR title",
    LinkLevel.BODY: "the PR description",
    LinkLevel.BRANCH: "the branch name",
    LinkLevel.CHANGED_FILES: "the changed story files",
}
_HOW_TO_LINK = (
    "name the story in the PR title (for example 'Story 1.3: User login'), use a branch such as "
    "story/1.3-user-login, or change exactly one story file"
)


def _label(story_id: StoryId) -> str:
    return f"{story_id[0]}.{story_id[1]}"


@dataclass(frozen=True)
class Linked:
    epic: int
    story: int
    level: LinkLevel

    def describe(self) -> str:
        return f"Linked to story {self.epic}.{self.story} by {_LEVEL_WORDS[self.level]}."


@dataclass(frozen=True)
class Ambiguous:
    candidates: tuple[StoryId, ...]
    level: LinkLevel

    def describe(self) -> str:
        named = ", ".join(_label(c) for c in self.candidates)
        where = _LEVEL_WORDS[self.level]
        return (
            f"{where[0].upper()}{where[1:]} names several stories ({named}); this PR is not linked. Name the "
            f"one story it delivers in the PR title, for example 'Story {_label(self.candidates[0])}: ...'."
        )


@dataclass(frozen=True)
class Unlinked:
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"No story found for this PR: {_HOW_TO_LINK}."
        return " ".join((text, *self.notes))


LinkResult = Linked | Ambiguous | Unlinked

MAX_TEXT_CHARS = 65_536
# Possessive quantifiers (`*+`, `++`): each run of spaces, digits or letters is read one way only, so a
# title or body of "story" and 65,000 spaces costs one pass instead of a quadratic search.
_MENTION = re.compile(
    r"(?<!\w)story(?:\s*+#)?[\s*_]*+[:：]?[\s*_]*+"
    r"(?P<epic>\d++)\.(?P<story>\d++)(?P<suffix>[A-Za-z]++)?(?P<third>\.\d++)?(?!\w)",
    re.IGNORECASE,
)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


def story_mentions(text: str) -> tuple[list[StoryId], list[str]]:
    """Distinct `Story E.S` mentions in order, and notes about mentions that cannot be stories."""
    found: list[StoryId] = []
    notes: list[str] = []
    for match in _MENTION.finditer(_HTML_COMMENT.sub(" ", text[:MAX_TEXT_CHARS])):
        raw = clip(f"{match['epic']}.{match['story']}{match['suffix'] or ''}{match['third'] or ''}", 24)
        if match["suffix"] or match["third"]:
            notes.append(f"Story {raw} cannot be linked: the marketplace stores epic and story numbers as integers.")
            continue
        epic, story = storable_number(match["epic"]), storable_number(match["story"])
        if epic is None or story is None:
            notes.append(f"Story {raw} cannot be linked: epic and story numbers go up to {MAX_STORY_NUMBER}.")
            continue
        story_id = (epic, story)
        if story_id not in found:
            found.append(story_id)
    return found, notes


def _files_level(changed_files: Iterable[str], story_dir: str) -> tuple[list[StoryId], list[str]]:
    found: list[StoryId] = []
    notes: list[str] = []
    for path in changed_files:
        if not is_story_path(path, story_dir) or kind_from_name(path) is not None:
            continue  # a validation report or summary names a story without being it
        try:
            story_id = story_id_from_path(path)
        except StoryIdError as exc:
            notes.append(str(exc))
            continue
        if story_id is not None and story_id not in found:
            found.append(story_id)
    return found, notes


def link_pull_request(
    *,
    title: str | None,
    body: str | None,
    head_branch: str | None,
    changed_files: Iterable[str],
    story_dir: str,
    branch_pattern: str | BranchPattern = DEFAULT_BRANCH_PATTERN,
) -> LinkResult:
    """The story a PR delivers, decided by the first level that names any story."""
    notes: list[str] = []
    title_ids, title_notes = story_mentions(title or "")
    body_ids, body_notes = story_mentions(body or "")
    notes += title_notes + body_notes
    levels: list[tuple[LinkLevel, list[StoryId]]] = [
        (LinkLevel.TITLE, title_ids),
        (LinkLevel.BODY, body_ids),
        (LinkLevel.BRANCH, story_ids_in_branch(branch_pattern, head_branch or "")),
    ]
    # The file list can be long and is only needed when nothing above matched.
    for level, candidates in levels:
        result = _decide(level, candidates)
        if result is not None:
            return result
    file_ids, file_notes = _files_level(changed_files, story_dir)
    result = _decide(LinkLevel.CHANGED_FILES, file_ids)
    if result is not None:
        return result
    return Unlinked(notes=tuple(notes + file_notes))


def _decide(level: LinkLevel, candidates: list[StoryId]) -> Linked | Ambiguous | None:
    if not candidates:
        return None
    if len(candidates) == 1:
        epic, story = candidates[0]
        return Linked(epic=epic, story=story, level=level)
    return Ambiguous(candidates=tuple(candidates), level=level)
