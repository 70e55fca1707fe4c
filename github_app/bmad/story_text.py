"""Where a story file keeps its parts, as real files write them.

BMAD's template puts everything under `##` headings. Real files also use front matter (`status:`,
`title:`), a table under the title (`| **Status** | Done |`), bold labels (`**Status:** Done`,
`**Critérios de Aceitação:**` followed by a list), bullets under another heading (`- **Status:** Done`) and
`###` headings (`### Acceptance Criteria ✅`). This module finds each part; `story_file` decides what the
parts mean.

Lines longer than `MAX_LABEL_LINE` are never examined as labels, headings are matched by plain string
comparison, and no pattern nests quantifiers, so the cost stays linear in the file's size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LABEL_LINE = 500
MAX_FRONT_MATTER_LINES = 60
MAX_HEADING = 200
MAX_TITLE_LINE = 1000
MAX_HEADINGS = 2000  # real story files have a few dozen; past this many, headings only end sections

# Known parts and the headings or labels that open them. "review" collects the sections whose
# statuses are about something else (a QA verdict, a history of changes).
ALIASES: dict[str, tuple[str, ...]] = {
    "status": ("status", "状态", "狀態", "状態", "ステータス", "상태", "estado", "situação", "statut", "trạng thái"),
    "story": (
        "story",
        "user story",
        "story statement",
        "user story statement",
        "story overview",
        "story description",
        "故事",
        "用户故事",
        "用戶故事",
        "ストーリー",
        "ユーザーストーリー",
        "스토리",
        "사용자 스토리",
        "유저 스토리",
        "história",
        "história de usuário",
        "declaração da história",
        "historia de usuario",
        "user story / história",
    ),
    "acceptance criteria": (
        "acceptance criteria",
        "验收标准",
        "驗收標準",
        "验收条件",
        "驗收條件",
        "受け入れ基準",
        "受入基準",
        "受け入れ条件",
        "인수 조건",
        "인수 기준",
        "수용 기준",
        "완료 조건",
        "critérios de aceitação",
        "critérios de aceite",
        "criterios de aceptación",
        "critères d'acceptation",
        "akzeptanzkriterien",
        "tiêu chí chấp nhận",
    ),
    "review": (
        "qa results",
        "qa result",
        "change log",
        "changelog",
        "dev agent record",
        "review",
        "qa review",
        "gate",
        "gate status",
        "recommended status",
        "dependencies",
        "변경 이력",
    ),
}
_BY_ALIAS = {alias: key for key, aliases in ALIASES.items() for alias in aliases}

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
# `**Label:** value`, `- **Label**: value`, `__Label:__`; the label holds no emphasis characters.
_BOLD_LABEL = re.compile(r"^\s{0,3}(?:[-*+]\s+)?(?:\*\*|__)(?P<label>[^*_]{1,80})(?:\*\*|__)(?P<rest>.*)$")
# `Status: value` with optional bullet and emphasis, as older files write it.
_PLAIN_STATUS = re.compile(
    r"^\s{0,3}(?:[-*+>]\s+)?(?:status|状态|狀態|状態|ステータス|상태|estado|situação|statut)\s?[:：](?P<rest>.*)$",
    re.IGNORECASE,
)
_LEADING_WORDS = re.compile(r"[^\W_]+(?: [^\W_]+)*")
_TABLE_ROW = re.compile(r"^\s{0,3}\|(?P<label>[^|]{1,80})\|(?P<value>[^|]{0,300})\|")


@dataclass
class Part:
    key: str
    level: int  # 2..6 for a heading, 7 for a bold label
    exact: bool
    inline: str | None
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines).strip()


@dataclass
class StoryText:
    front_matter: dict[str, str]
    title_line: str | None
    parts: list[Part]
    status_lines: list[str]  # status values written as labels, bullets or table rows, in file order

    def part(self, key: str) -> Part | None:
        found = [p for p in self.parts if p.key == key]
        if not found:
            return None
        # A template heading wins over a deeper heading, which wins over a decorated one or a label.
        return min(found, key=lambda p: (not p.exact, p.level))


def atx_heading(line: str) -> tuple[int, str] | None:
    """`(level, text)` of a Markdown `#` heading line, without a regular expression: trailing spaces and
    closing `#`s are stripped in linear time whatever the line holds."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or not stripped.startswith("#"):
        return None
    level = len(stripped) - len(stripped.lstrip("#"))
    rest = stripped[level:]
    if level > 6 or (rest and rest[0] not in " \t"):
        return None
    text = rest.strip()
    closed = text.rstrip("#")
    if not closed or closed[-1] in " \t":
        text = closed.rstrip()
    return level, text


def plain(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def strip_leading_symbols(text: str) -> str:
    index = 0
    while index < len(text) and not text[index].isalnum():
        index += 1
    return text[index:]


def _candidates(name: str) -> list[str]:
    candidates = [name]
    bracketed = re.match(r"^([^()（）]*)[(（]([^()（）]*)[)）]\s*$", name)
    if bracketed:
        candidates += [bracketed[1], bracketed[2]]
    for candidate in list(candidates):
        candidates += re.split(r"\s*[/|]\s*", candidate)
    return [" ".join(strip_leading_symbols(c).split()).lower().rstrip(":：").strip() for c in candidates]


def heading_key(heading: str) -> tuple[str | None, bool, str | None]:
    """Which part a heading or label opens, whether it names it exactly (not `Acceptance Criteria ✅
    ALL DONE`), and a value written on it (`## Status: Done`)."""
    text = plain(heading[:MAX_HEADING]).rstrip(":：").strip()
    for candidate in _candidates(text):
        if candidate in _BY_ALIAS:
            return _BY_ALIAS[candidate], True, None
    lowered = " ".join(strip_leading_symbols(text).split()).lower()
    name, sep, value = _partition_colon(lowered)
    if sep and value.strip() and _BY_ALIAS.get(name.strip()) == "status":
        return "status", True, _partition_colon(text)[2].strip()
    # A decorated heading: known words, then something that is not a word (`Acceptance Criteria ✅`).
    head = _LEADING_WORDS.match(lowered)
    if head is not None and head.end() < len(lowered) and head[0] in _BY_ALIAS:
        return _BY_ALIAS[head[0]], False, None
    return None, False, None


def _partition_colon(text: str) -> tuple[str, str, str]:
    match = re.search(r"[:：]", text)
    if match is None:
        return text, "", ""
    return text[: match.start()].strip(), match.group(), text[match.end() :]


def _front_matter(lines: list[str]) -> tuple[dict[str, str], int]:
    """Simple `key: value` pairs of a leading `---` block, and the line where the body starts.

    Read line by line rather than with a YAML loader: only flat text values are wanted, and a story file
    is untrusted input.
    """
    first = 0
    while first < len(lines) and first < MAX_FRONT_MATTER_LINES and not lines[first].strip():
        first += 1
    if first >= len(lines) or lines[first].strip() != "---":
        return {}, 0
    found: dict[str, str] = {}
    for index, line in enumerate(lines[first + 1 : first + MAX_FRONT_MATTER_LINES + 1], start=first + 1):
        if line.strip() in ("---", "..."):
            return found, index + 1
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t", "-")):
            found.setdefault(key.strip().lower(), value.strip().strip("'\""))
    return {}, 0


def read_story_text(text: str) -> StoryText:
    lines = text.removeprefix("\ufeff").splitlines()
    front, start = _front_matter(lines)
    title: str | None = None
    parts: list[Part] = []
    status_lines: list[str] = []
    open_headings: list[Part] = []  # known parts still collecting lines, innermost last
    open_label: Part | None = None
    top_key: str | None = None  # the key of the enclosing `##` section
    in_fence = False
    headings_seen = 0
    for line in lines[start:]:
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else atx_heading(line)
        if heading is not None:
            level = heading[0]
            headings_seen += 1
            open_label = None
            open_headings = [p for p in open_headings if p.level < level]
            for part in open_headings:
                part.lines.append(line)  # a deeper heading belongs to the section around it
            if level == 1:
                top_key = None
                if title is None:
                    title = heading[1][:MAX_TITLE_LINE]
                continue
            key, exact, inline = heading_key(heading[1]) if headings_seen <= MAX_HEADINGS else (None, False, None)
            if level == 2:
                top_key = key
            elif top_key == "review":
                continue  # a QA verdict's "### Status" is not the story's
            if key is not None:
                part = Part(key, level, exact, inline)
                parts.append(part)
                open_headings.append(part)
            continue
        for part in open_headings:
            part.lines.append(line)
        if in_fence or len(line) > MAX_LABEL_LINE or top_key == "review":
            if open_label is not None:
                open_label.lines.append(line)
            continue
        label = _BOLD_LABEL.match(line)
        if label is not None:
            key, exact, inline = heading_key(label["label"])
            rest = label["rest"].lstrip(" :：*_").strip()
            if key == "status":
                status_lines.append(inline or rest)
            if key is not None or line.lstrip().startswith(("**", "__")):
                open_label = None
            if key in ("story", "acceptance criteria") and exact:
                open_label = Part(key, 7, True, None, [rest] if rest else [])
                parts.append(open_label)
                continue
        elif (plain_status := _PLAIN_STATUS.match(line)) is not None:
            status_lines.append(plain_status["rest"].strip())
        elif (row := _TABLE_ROW.match(line)) is not None and heading_key(row["label"])[0] == "status":
            status_lines.append(row["value"].strip())
        if open_label is not None:
            open_label.lines.append(line)
    return StoryText(front, title, parts, status_lines)
