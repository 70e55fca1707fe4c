"""BMAD story files: `<devStoryLocation>/{epic}.{story}.{slug}.md`.

The parser is lenient where real repositories vary (status spelling and decoration, translated headings,
`-` instead of `.` after the story number) and strict where guessing would corrupt data: the marketplace
stores epic and story numbers as integers, so an id such as `1.3A` raises `StoryIdError` instead of being
silently stored as 1.3. Anything else that could not be read ends up in `StoryDocument.problems`, for the
check run and the audit log.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from github_app.bmad.core_config import is_under, normalize_path
from github_app.bounded import MAX_STORY_NUMBER, bounded_repr, clean_text, clip, storable_number


class BmadFileError(ValueError):
    """A BMAD file that cannot be used at all. The message is written for the person who committed it."""


class StoryIdError(BmadFileError):
    """A story id that is not two plain integers (`1.3A`, `3.1b`, `1.3.1`)."""

    def __init__(self, message: str, *, story_id: str, path: str) -> None:
        super().__init__(message)
        self.story_id = story_id
        self.path = path


class StoryFileStatus(enum.StrEnum):
    """The `## Status` values of BMAD's story template."""

    DRAFT = "Draft"
    APPROVED = "Approved"
    IN_PROGRESS = "InProgress"
    REVIEW = "Review"
    DONE = "Done"


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


_KNOWN_STATUSES = ", ".join(s.value for s in StoryFileStatus)

# A letter suffix or a third number is captured so it can be rejected by name instead of misread as 1.3.
_FILE_ID = re.compile(
    r"^(?P<epic>\d+)\.(?P<story>\d+)(?P<suffix>[A-Za-z]+)?(?P<third>\.\d+(?=[.\-_\s]|\.md$|$))?(?P<rest>.*)$"
)
_TITLE_PREFIX = r"(?:(?:user\s+)?story|用户故事|用戶故事|故事|ユーザーストーリー|ストーリー)"
_HEADING_ID = re.compile(
    rf"^(?:{_TITLE_PREFIX}\s*+#?\s*+)?(?P<epic>\d+)\.(?P<story>\d+)(?P<suffix>[A-Za-z]+)?"
    r"(?P<third>\.\d+)?(?![\w])\s*(?:[:：.\-–—]\s*)?(?P<title>.*)$",
    re.IGNORECASE,
)
_HEADING_PREFIX_ONLY = re.compile(rf"^{_TITLE_PREFIX}\s*[:：]\s*", re.IGNORECASE)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
# The heading text is cut from its closing `#`s in code (`_heading_text`): a lazy group followed by
# optional spaces and hashes backtracks quadratically on a long line of spaces.
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*)$")
_LOOSE_STATUS_LINE = re.compile(
    r"^[\s*_>-]*(?:status|状态|狀態|状態|ステータス)[\s*_]*[:：][\s*_]*(?P<value>.+)$", re.IGNORECASE
)
_NOT_STORY_FILES = frozenset({"readme.md", "index.md", "changelog.md"})

_SECTION_ALIASES: dict[str, tuple[str, ...]] = {
    "status": ("status", "状态", "狀態", "状態", "ステータス"),
    "story": ("story", "user story", "故事", "用户故事", "用戶故事", "ストーリー", "ユーザーストーリー"),
    "acceptance criteria": (
        "acceptance criteria",
        "验收标准",
        "驗收標準",
        "验收条件",
        "驗收條件",
        "受け入れ基準",
        "受入基準",
        "受け入れ条件",
    ),
}
_SECTION_BY_ALIAS = {alias: key for key, aliases in _SECTION_ALIASES.items() for alias in aliases}


def _status_pattern(words: str) -> re.Pattern[str]:
    # Latin words may be glued (InProgress), hyphenated or spaced; a trailing letter means another word.
    if words.isascii():
        joined = r"[\s_-]*".join(re.escape(w) for w in words.split())
        return re.compile(rf"^{joined}(?![a-z])")
    return re.compile(rf"^{re.escape(words)}")


# Longest phrases first: "ready for review" must not be read as something shorter.
_STATUS_PHRASES: tuple[tuple[str, StoryFileStatus], ...] = (
    ("ready for development", StoryFileStatus.APPROVED),
    ("ready for dev", StoryFileStatus.APPROVED),
    ("ready for review", StoryFileStatus.REVIEW),
    ("in progress", StoryFileStatus.IN_PROGRESS),
    ("in review", StoryFileStatus.REVIEW),
    ("review", StoryFileStatus.REVIEW),
    ("draft", StoryFileStatus.DRAFT),
    ("approved", StoryFileStatus.APPROVED),
    ("completed", StoryFileStatus.DONE),
    ("complete", StoryFileStatus.DONE),
    ("done", StoryFileStatus.DONE),
    ("草稿", StoryFileStatus.DRAFT),
    ("ドラフト", StoryFileStatus.DRAFT),
    ("下書き", StoryFileStatus.DRAFT),
    ("已批准", StoryFileStatus.APPROVED),
    ("已审批", StoryFileStatus.APPROVED),
    ("已核准", StoryFileStatus.APPROVED),
    ("承認済み", StoryFileStatus.APPROVED),
    ("进行中", StoryFileStatus.IN_PROGRESS),
    ("進行中", StoryFileStatus.IN_PROGRESS),
    ("开发中", StoryFileStatus.IN_PROGRESS),
    ("実装中", StoryFileStatus.IN_PROGRESS),
    ("待审查", StoryFileStatus.REVIEW),
    ("审查中", StoryFileStatus.REVIEW),
    ("待评审", StoryFileStatus.REVIEW),
    ("评审中", StoryFileStatus.REVIEW),
    ("レビュー", StoryFileStatus.REVIEW),
    ("已完成", StoryFileStatus.DONE),
    ("完成", StoryFileStatus.DONE),
    ("完了", StoryFileStatus.DONE),
)
_STATUS_PATTERNS = tuple((_status_pattern(phrase), status) for phrase, status in _STATUS_PHRASES)


def parse_story_status(raw: str) -> StoryFileStatus | None:
    """Map a `## Status` value to the template's statuses, or None when it means none of them.

    Tolerates what real files contain: `In Progress`, `**Done**`, `✅ Done`, `Ready for Development`,
    `Done - all tasks complete`. Words *before* the status are not skipped, so `Not Done` is not Done.
    """
    text = re.sub(r"[*_`~]", "", raw).strip().lower()
    text = _strip_leading_symbols(text)
    text = re.sub(r"^(?:status|状态|狀態|状態|ステータス)\s*[:：]\s*", "", text)
    text = _strip_leading_symbols(text)
    for pattern, status in _STATUS_PATTERNS:
        if pattern.match(text):
            return status
    return None


def _strip_leading_symbols(text: str) -> str:
    index = 0
    while index < len(text) and not text[index].isalnum():
        index += 1
    return text[index:]


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
            f"(such as {match['epic']}.<next free number>).",
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


@dataclass
class _Section:
    key: str | None
    inline_value: str | None
    lines: list[str]


def parse_story_file(path: str, text: str) -> StoryDocument:
    """Parse a story file. Raises BmadFileError (or its StoryIdError) when no storable id can be found."""
    lines = text.removeprefix("\ufeff").splitlines()
    title_line, preamble, sections = _split(lines)
    problems: list[str] = []

    name_match = _FILE_ID.match(normalize_path(path).rsplit("/", 1)[-1])
    heading_match = _HEADING_ID.match(_plain(title_line)) if title_line is not None else None

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
    else:
        raise BmadFileError(
            f"{path}: no story number found; name the file {{epic}}.{{story}}.{{slug}}.md "
            f"(for example 1.3.user-login.md) or start it with a title such as '# Story 1.3: User login'"
        )

    title = _title(title_line, heading_match)
    if not title:
        title = _title_from_name(name_match) or f"Story {epic}.{story}"
        problems.append(f"no '# Story {epic}.{story}: <title>' line; using the title {bounded_repr(title)}")

    status_raw = _status_text(preamble, sections)
    status: StoryFileStatus | None = None
    if status_raw is None:
        problems.append("no '## Status' section")
    else:
        status = parse_story_status(status_raw)
        if status is None:
            problems.append(f"status {bounded_repr(status_raw)} is not one of {_KNOWN_STATUSES}")

    description = _section_text(sections, "story")
    if description is None:
        problems.append("no '## Story' section")
    acceptance = _section_text(sections, "acceptance criteria")
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
    )


def _split(lines: list[str]) -> tuple[str | None, list[str], list[_Section]]:
    """The first level-1 heading, the lines before the first level-2 heading, and the level-2 sections.

    Headings inside fenced code blocks are text, not structure.
    """
    title: str | None = None
    preamble: list[str] = []
    sections: list[_Section] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX.match(line)
        if heading is None or len(heading[1]) > 2:
            (sections[-1].lines if sections else preamble).append(line)
        elif len(heading[1]) == 2:
            sections.append(_Section(*_section_key(_heading_text(heading)), lines=[]))
        elif title is None:
            title = _heading_text(heading)
        else:
            # A second top-level heading ends the current section without opening a known one.
            sections.append(_Section(None, None, lines=[]))
    return title, preamble, sections


def _heading_text(heading: re.Match[str]) -> str:
    """An ATX heading's text without its optional closing `#`s."""
    return heading[2].rstrip().rstrip("#").rstrip()


def _plain(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def _heading_candidates(name: str) -> list[str]:
    candidates = [name]
    # Written so that no part of the name can be read two ways: both stay linear on hostile headings.
    bracketed = re.match(r"^([^(（]*+)[(（](.*)[)）]\s*$", name)
    if bracketed:
        candidates += [bracketed[1], bracketed[2]]
    for candidate in list(candidates):
        candidates += re.split(r"[/|]", candidate)
    return [" ".join(_strip_leading_symbols(c).split()).lower() for c in candidates]


def _section_key(heading: str) -> tuple[str | None, str | None]:
    """Which known section a `##` heading opens, and a value written on the heading itself
    (`## Status: Done`)."""
    text = _plain(heading).rstrip(":：").strip()
    for candidate in _heading_candidates(text):
        if candidate in _SECTION_BY_ALIAS:
            return _SECTION_BY_ALIAS[candidate], None
    name, sep, value = _partition_colon(text)
    if sep and value.strip() and any(_SECTION_BY_ALIAS.get(c) == "status" for c in _heading_candidates(name)):
        return "status", value.strip()
    return None, None


def _partition_colon(text: str) -> tuple[str, str, str]:
    match = re.search(r"[:：]", text)
    if match is None:
        return text, "", ""
    return text[: match.start()].strip(), match.group(), text[match.end() :]


def _status_text(preamble: list[str], sections: list[_Section]) -> str | None:
    for section in sections:
        if section.key != "status":
            continue
        if section.inline_value:
            return section.inline_value
        for line in section.lines:
            if line.strip():
                return line.strip()
        return None
    # Older files put `**Status:** Done` under the title instead of in a section.
    for line in preamble:
        loose = _LOOSE_STATUS_LINE.match(line)
        if loose:
            return loose["value"].strip()
    return None


def _section_text(sections: list[_Section], key: str) -> str | None:
    for section in sections:
        if section.key == key:
            return "\n".join(section.lines).strip()
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
