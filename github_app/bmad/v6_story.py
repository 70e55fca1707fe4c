"""BMAD v6 story files and build specs, kept in `{implementation_artifacts}` (at any depth, since some
projects use a `stories/` folder).

- A classic story, `{key}.md` such as `1-4-sign-in.md`, from the create-story template: an optional
  `---` front matter (`baseline_commit`), `# Story N.M: Title`, a plain `Status: ready-for-dev` line (not a
  heading, unlike v4), then `## Story`, `## Acceptance Criteria`, `## Tasks / Subtasks`, ...
- A build spec, `spec-{slug}.md`, from bmad-build: YAML front matter with `status: draft | ready-for-dev |
  in-progress | in-review | done` (build-auto adds `blocked`), an `## Intent` inside
  `<frozen-after-approval>`, and `## Tasks & Acceptance`. Its slug starts with the tracking id when it
  belongs to a sprint story (`spec-3-2-digest-delivery.md`); a spec without one names no story.

No I/O. The file is untrusted: size-limited by the caller, front matter read with the alias-free YAML
loader, and only linear-time regular expressions are used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from github_app.bmad import safe_yaml
from github_app.bmad.core_config import describe_yaml_error, is_under, normalize_path
from github_app.bmad.sprint_status import LEGACY_STATUSES, SprintStoryStatus, parse_story_key

MAX_BYTES = 1024 * 1024
FRONT_MATTER_MAX_BYTES = 16 * 1024

_SPEC_NAME = re.compile(r"spec-(.+)\.md", re.IGNORECASE | re.DOTALL)
_STORY_NAME = re.compile(r"(\d+-\d+[A-Za-z]*-.+)\.md", re.IGNORECASE | re.DOTALL)
_ATX = re.compile(r" {0,3}(#{1,6})[ \t]+(.*)")
_FENCE = re.compile(r" {0,3}(```|~~~)")
_STATUS_LINE = re.compile(r"[ \t]*[*_]*status[*_]*[ \t]*:[ \t]*(.*)", re.IGNORECASE)
_TITLE = re.compile(r"(?:story[ \t]+)?\d+[.\-]\d+[A-Za-z]*[ \t]*[:：.\-–—][ \t]*(.*)", re.IGNORECASE)
_FROZEN_TAG = re.compile(r"[ \t]*</?frozen-after-approval>[ \t]*", re.IGNORECASE)

SPEC_STATUSES = {
    "draft": SprintStoryStatus.BACKLOG,
    "ready-for-dev": SprintStoryStatus.READY_FOR_DEV,
    "in-progress": SprintStoryStatus.IN_PROGRESS,
    "in-review": SprintStoryStatus.REVIEW,
    "review": SprintStoryStatus.REVIEW,
    "done": SprintStoryStatus.DONE,
}


class V6StoryError(ValueError):
    """The file cannot be used; the message says why."""


@dataclass(frozen=True)
class V6StoryDocument:
    kind: str  # "story" or "spec"
    path: str
    epic: int | None
    story: int | None
    title: str
    description: str
    acceptance_criteria: str
    status: SprintStoryStatus | None  # None: no status, or one the app does not map (e.g. blocked)
    raw_status: str | None
    problems: tuple[str, ...] = ()


def is_v6_story_path(path: str, implementation_dir: str) -> bool:
    """A story file (`N-M-slug.md`) or build spec (`spec-*.md`) under the implementation folder."""
    if not is_under(path, implementation_dir):
        return False
    name = normalize_path(path).rsplit("/", 1)[-1]
    return bool(_STORY_NAME.fullmatch(name) or _SPEC_NAME.fullmatch(name))


def story_key_of(path: str) -> str | None:
    """The sprint key a file name carries: `1-4-sign-in` for `1-4-sign-in.md` and `spec-1-4-sign-in.md`."""
    name = normalize_path(path).rsplit("/", 1)[-1]
    spec = _SPEC_NAME.fullmatch(name)
    stem = spec.group(1) if spec else (m.group(1) if (m := _STORY_NAME.fullmatch(name)) else None)
    if stem is None or not stem[:1].isdigit():
        return None
    return stem


def parse_v6_story(path: str, text: str | bytes) -> V6StoryDocument:
    """Raises V6StoryError for a file over the size limit or a story key the marketplace cannot store;
    everything else is read tolerantly, with oddities in `problems`."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_BYTES:
        raise V6StoryError(f"{path} is {len(raw)} bytes, over the {MAX_BYTES}-byte limit")
    body = raw.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    name = normalize_path(path).rsplit("/", 1)[-1]
    kind = "spec" if _SPEC_NAME.fullmatch(name) else "story"
    problems: list[str] = []

    epic: int | None = None
    number: int | None = None
    key = story_key_of(path)
    if key is not None:
        try:
            epic, number, _slug = parse_story_key(key)
        except ValueError as exc:
            if kind == "story":
                raise V6StoryError(f"{path}: {exc}") from exc
            problems.append(f"the spec's tracking id cannot be stored ({exc}); it names no story")

    front, lines = _front_matter(body, path, problems)
    title_line, preamble, sections = _split(lines)

    if kind == "spec":
        raw_status = front.get("status")
        status_text = str(raw_status).strip() if isinstance(raw_status, str | int | float) else None
        status = SPEC_STATUSES.get(status_text.lower()) if status_text else None
        fm_title = front.get("title")
        title = fm_title.strip() if isinstance(fm_title, str) and fm_title.strip() else _heading_title(title_line)
        description = sections.get("intent", "")
        acceptance = sections.get("acceptance criteria") or sections.get("tasks & acceptance", "")
    else:
        status_text = _status_text(preamble, sections)
        status = _story_status(status_text) if status_text else None
        title = _heading_title(title_line)
        description = sections.get("story", "")
        acceptance = sections.get("acceptance criteria", "")
    if status_text is None:
        problems.append("no status found")
    elif status is None:
        problems.append(f"status {status_text[:80]!r} is not a sprint status; ignored")
    if not title:
        title = key or name.removesuffix(".md")
    return V6StoryDocument(
        kind=kind,
        path=path,
        epic=epic,
        story=number,
        title=title[:300],
        description=description,
        acceptance_criteria=acceptance,
        status=status,
        raw_status=status_text,
        problems=tuple(problems),
    )


def _story_status(text: str) -> SprintStoryStatus | None:
    word = text.strip().strip("*_`").strip().lower()
    if word in LEGACY_STATUSES:
        return LEGACY_STATUSES[word]
    try:
        return SprintStoryStatus(word)
    except ValueError:
        return None


def _front_matter(body: str, path: str, problems: list[str]) -> tuple[dict[str, Any], list[str]]:
    lines = body.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, lines
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        problems.append("front matter is not closed with ---; read as text")
        return {}, lines
    front = "\n".join(lines[1:end])
    data: Any = None
    if len(front.encode()) > FRONT_MATTER_MAX_BYTES:
        problems.append(f"{path} front matter is over the {FRONT_MATTER_MAX_BYTES}-byte limit; read as text")
    else:
        try:
            data = safe_yaml.load(front)
        except yaml.YAMLError as exc:
            problems.append(f"{path} front matter is not valid YAML ({describe_yaml_error(exc)})")
    return (data if isinstance(data, dict) else {}), lines[end + 1 :]


def _split(lines: list[str]) -> tuple[str | None, list[str], dict[str, str]]:
    """The `#` title line, the lines before the first `##` section, and each `##` section's text
    by lower-cased heading (the first of a name wins)."""
    title: str | None = None
    preamble: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _ATX.fullmatch(line)
        if heading is not None:
            level, text = len(heading.group(1)), heading.group(2).strip().rstrip("#").strip()
            if level == 1 and title is None and current is None:
                title = text
                continue
            if level == 2:
                current = sections.setdefault(text.lower(), []) if text.lower() not in sections else []
                continue
        if _FROZEN_TAG.fullmatch(line):
            continue
        (preamble if current is None else current).append(line)
    return title, preamble, {name: "\n".join(body).strip() for name, body in sections.items()}


def _status_text(preamble: list[str], sections: dict[str, str]) -> str | None:
    for line in preamble:
        match = _STATUS_LINE.fullmatch(line)
        if match and match.group(1).strip():
            return match.group(1).strip()
    heading = sections.get("status", "").strip()
    return heading.split("\n", 1)[0].strip() if heading else None


def _heading_title(line: str | None) -> str:
    if not line:
        return ""
    match = _TITLE.fullmatch(line)
    return (match.group(1) if match else line).strip()
