"""BMAD story files: `<devStoryLocation>/{epic}.{story}.{slug}.md`.

The parser is lenient where real repositories vary (status spelling and decoration, translated headings,
`-` instead of `.` after the story number) and strict where guessing would corrupt data: the marketplace
stores epic and story numbers as integers, so an id such as `1.3A` raises `StoryIdError` instead of being
silently stored as 1.3. Anything else that could not be read ends up in `StoryDocument.problems`, for the
check run and the audit log.

Where the parts are found is `story_text`'s business, which files are stories at all is `story_kind`'s,
and what a written status means is `statuses`'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from github_app.bmad.core_config import is_under, normalize_path
from github_app.bmad.statuses import KNOWN_STATUSES, MAX_STATUS_CHARS, StoryFileStatus, map_status
from github_app.bmad.story_kind import NotAStory, kind_from_name, kind_from_title
from github_app.bmad.story_text import Part, StoryText, read_story_text
from github_app.bounded import MAX_STORY_NUMBER, bounded_repr, clean_text, clip, storable_number

__all__ = ["BmadFileError", "NotAStory", "StoryDocument", "StoryFileStatus", "StoryIdError", "parse_story_file"]


class BmadFileError(ValueError):
    """A BMAD file that cannot be used at all. The message is written for the person who committed it."""


class StoryIdError(BmadFileError):
    """A story id that is not two plain integers (`1.3A`, `3.1b`, `1.3.1`)."""

    def __init__(self, message: str, *, story_id: str, path: str) -> None:
        super().__init__(message)
        self.story_id = story_id
        self.path = path


@dataclass(frozen=True)
class StoryDocument:
    epic: int
    story: int
    title: str
    status_raw: str | None
    status: StoryFileStatus | None
    description: str
    acceptance_criteria: str
    problems: tuple[str, ...] = ()
    # False when the title was made up from the file name: it must not replace a stored title.
    title_found: bool = True


_KNOWN_STATUSES = KNOWN_STATUSES
MAX_TITLE = 300
MAX_TITLE_SCAN = 1000

# A letter suffix or a third number is captured so it can be rejected by name instead of misread as 1.3.
_FILE_ID = re.compile(
    r"^(?P<epic>\d+)\.(?P<story>\d+)(?P<suffix>[A-Za-z]+)?(?P<third>\.\d+(?=[.\-_\s]|\.md$|$))?(?P<rest>.*)$"
)
_TITLE_PREFIX = (
    r"(?:(?:user\s+)?story|用户故事|用戶故事|故事|ユーザーストーリー|ストーリー|사용자\s*스토리|스토리"
    r"|hist[óo]ria|histoire|geschichte|storia|câu\s+chuyện)"
)
_HEADING_ID = re.compile(
    rf"^(?:{_TITLE_PREFIX}\s*+#?\s*+)?(?P<epic>\d+)\.(?P<story>\d+)(?P<suffix>[A-Za-z]+)?"
    r"(?P<third>\.\d+)?(?![\w])\s*(?:[:：.\-–—]\s*)?(?P<title>.*)$",
    re.IGNORECASE,
)
_HEADING_PREFIX_ONLY = re.compile(rf"^{_TITLE_PREFIX}\s*[:：]\s*", re.IGNORECASE)
# A title that is the story statement itself: "As a Tenant Admin, I want ...".
_STATEMENT = re.compile(r"^(?:as\s+an?|como|en\s+tant\s+que|作为|作為)\s", re.IGNORECASE)
_NOT_STORY_FILES = frozenset({"readme.md", "index.md", "changelog.md"})


def parse_story_status(raw: str, aliases: Mapping[str, StoryFileStatus] | None = None) -> StoryFileStatus | None:
    """Map a `## Status` value to the template's statuses, or None when it means none of them
    (see `github_app.bmad.statuses`)."""
    return map_status(raw, aliases)


def is_story_path(path: str, story_dir: str) -> bool:
    """Whether a changed file is a story file: a Markdown file under the story folder.

    Files whose names carry no story number still count, because the `# Story 1.3:` heading can supply it;
    README and index pages do not.
    """
    if not is_under(path, story_dir):
        return False
    name = normalize_path(path).rsplit("/", 1)[-1]
    return name.lower().endswith(".md") and not name.startswith(".") and name.lower() not in _NOT_STORY_FILES


def story_id_from_path(path: str) -> tuple[int, int] | None:
    """`(epic, story)` from a story file name, None when the name does not start with a story id.

    Raises StoryIdError for ids the marketplace cannot store (`1.3A.login.md`, `1.3.1.login.md`).
    """
    name = normalize_path(path).rsplit("/", 1)[-1]
    match = _FILE_ID.match(name)
    if match is None:
        return None
    return _reject_unstorable(match, path)


def _reject_unstorable(match: re.Match[str], path: str) -> tuple[int, int]:
    """`(epic, story)` of a matched id; raises StoryIdError for one the marketplace cannot store."""
    base = clip(f"{match['epic']}.{match['story']}", 24)
    if match["suffix"]:
        story_id = base + match["suffix"]
        raise StoryIdError(
            f"{path}: story id {story_id} has a letter suffix; the marketplace stores epic and story "
            f"numbers as integers, so {story_id} cannot be stored. Renumber the story with plain numbers "
            f"(such as {clip(match['epic'], 12)}.<next free number>).",
            story_id=story_id,
            path=path,
        )
    if match["third"]:
        story_id = base + match["third"]
        raise StoryIdError(
            f"{path}: story id {story_id} has three numbers; the marketplace stores only an epic and a story "
            f"number. Renumber the story as {{epic}}.{{story}}.",
            story_id=story_id,
            path=path,
        )
    epic, story = storable_number(match["epic"]), storable_number(match["story"])
    if epic is None or story is None:
        raise StoryIdError(
            f"{path}: story id {base} is too large; epic and story numbers go up to {MAX_STORY_NUMBER}.",
            story_id=base,
            path=path,
        )
    return epic, story


def parse_story_file(
    path: str, text: str, *, status_aliases: Mapping[str, StoryFileStatus] | None = None
) -> StoryDocument:
    """Parse a story file. Raises BmadFileError (or its StoryIdError) when no storable id can be found,
    and NotAStory when the file is another kind of document (a validation report, an appendix)."""
    parts = read_story_text(text)
    title_line = parts.title_line
    problems: list[str] = []

    name_match = _FILE_ID.match(normalize_path(path).rsplit("/", 1)[-1])
    name_kind = kind_from_name(path)
    if name_kind is not None:
        raise NotAStory(path, f"its name says it is {name_kind}")
    if name_match is not None:
        _reject_unstorable(name_match, path)
    heading_match = _HEADING_ID.match(_plain(title_line)[:MAX_TITLE_SCAN]) if title_line is not None else None
    title_kind = kind_from_title(_title(title_line, heading_match))
    if title_kind is not None:
        raise NotAStory(path, f"its title says it is {title_kind}")

    if name_match is not None:
        epic, story = _reject_unstorable(name_match, path)
        if heading_match is not None:
            heading_id = clip(
                f"{heading_match['epic']}.{heading_match['story']}"
                f"{heading_match['suffix'] or ''}{heading_match['third'] or ''}",
                24,
            )
            heading_ints = (storable_number(heading_match["epic"]), storable_number(heading_match["story"]))
            if heading_match["suffix"] or heading_match["third"] or heading_ints != (epic, story):
                problems.append(
                    f"the file name says story {epic}.{story} but the title says {heading_id}; using the file name"
                )
    elif heading_match is not None:
        epic, story = _reject_unstorable(heading_match, path)
    elif (front_id := _front_matter_id(parts.front_matter)) is not None:
        epic, story = front_id
    else:
        raise BmadFileError(
            f"{path}: no story number found; name the file {{epic}}.{{story}}.{{slug}}.md "
            f"(for example 1.3.user-login.md) or start it with a title such as '# Story 1.3: User login'"
        )

    status_part = parts.part("status")
    story_part = parts.part("story")
    acceptance_part = parts.part("acceptance criteria")
    status_raw = _status_text(parts, status_part)
    heading_title = _title(title_line, heading_match)
    statement = heading_title if _STATEMENT.match(heading_title) else None
    if status_raw is None and story_part is None and acceptance_part is None and statement is None:
        raise NotAStory(path, "it has none of a story's sections (Status, Story, Acceptance Criteria)")

    title = heading_title
    title_found = bool(title) and statement is None
    if not title_found and parts.front_matter.get("title"):
        title, title_found = _plain(parts.front_matter["title"])[:MAX_TITLE], True
    if not title:
        title = _title_from_name(name_match) or f"Story {epic}.{story}"
        problems.append(f"no '# Story {epic}.{story}: <title>' line; using the title {bounded_repr(title)}")
    title = title[:MAX_TITLE]

    status: StoryFileStatus | None = None
    if status_raw is None:
        problems.append("no '## Status' section")
    else:
        status = map_status(status_raw, status_aliases)
        if status is None:
            problems.append(
                f"status {bounded_repr(status_raw)} is not one of {_KNOWN_STATUSES}; add it to status_aliases in "
                f".github/bmad-marketplace.yml if it means one of them"
            )

    description = story_part.text() if story_part is not None else statement
    if description is None:
        problems.append("no '## Story' section")
    acceptance = acceptance_part.text() if acceptance_part is not None else None
    if acceptance is None:
        problems.append("no '## Acceptance Criteria' section")

    return StoryDocument(
        epic=epic,
        story=story,
        title=clean_text(title),
        status_raw=status_raw,
        status=status,
        description=clean_text(description or ""),
        acceptance_criteria=clean_text(acceptance or ""),
        problems=tuple(problems),
        title_found=title_found,
    )


def _front_matter_id(front: dict[str, str]) -> tuple[int, int] | None:
    epic, story = front.get("epic", ""), front.get("story", "")
    if epic.isdigit() and story.isdigit() and len(epic) <= 6 and len(story) <= 6:
        return int(epic), int(story)
    return None


def _plain(text: str | None) -> str:
    return re.sub(r"[*_`]", "", text or "").strip()


def _status_text(parts: StoryText, status_part: Part | None) -> str | None:
    if status_part is not None:
        if status_part.inline:
            return status_part.inline[:MAX_STATUS_CHARS]
        for line in status_part.lines:
            if line.strip():
                return line.strip()[:MAX_STATUS_CHARS]
    if parts.front_matter.get("status"):
        return parts.front_matter["status"][:MAX_STATUS_CHARS]
    for line in parts.status_lines:
        if line.strip():
            return line.strip()[:MAX_STATUS_CHARS]
    return None


def _title(title_line: str | None, heading_match: re.Match[str] | None) -> str:
    if title_line is None:
        return ""
    if heading_match is not None:
        return _plain(heading_match["title"])
    return _plain(_HEADING_PREFIX_ONLY.sub("", _plain(title_line)))


def _title_from_name(name_match: re.Match[str] | None) -> str:
    if name_match is None:
        return ""
    slug = re.sub(r"\.md$", "", name_match["rest"], flags=re.IGNORECASE)
    return " ".join(re.sub(r"[-_.]+", " ", slug).split())
