"""BMAD v6 `sprint-status.yaml`: the story map, read key by key.

`development_status` is one flat, ordered map of `epic-N`, `N-M[a]-slug` (stories) and
`epic-N-retrospective` keys to statuses (bmad-sprint-planning's `sprint_plan.py`). Stories are known by
their (epic, story) numbers, never by the slug: the slug is the title, so retitling a story changes its
key. A key the marketplace cannot store (a letter suffix such as `1-2a-...`, numbers beyond a 32-bit
Int, two keys naming one story) and a status BMAD does not define are refused one by one with a reason;
the rest of the file still counts. A file that is not a sprint status at all raises `SprintStatusError`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import yaml

from github_app.bmad import safe_yaml
from github_app.bmad.core_config import describe_yaml_error

MAX_BYTES = 512 * 1024
MAX_KEY_LENGTH = 200
MAX_INT = 2**31 - 1  # the seed's Story.epicNumber / storyNumber are Prisma Int

# Anchored and without nested quantifiers: linear in the key's length.
_STORY_KEY = re.compile(r"(\d+)-(\d+)([A-Za-z]*)-(.+)", re.DOTALL)
_EPIC_KEY = re.compile(r"epic-(\d+)")
_RETRO_KEY = re.compile(r"epic-(\d+)-retrospective")


class SprintStatusError(ValueError):
    """The file cannot be used as a sprint status; the message says what to fix."""


class SprintStoryStatus(enum.StrEnum):
    BACKLOG = "backlog"
    READY_FOR_DEV = "ready-for-dev"
    IN_PROGRESS = "in-progress"
    REVIEW = "review"
    DONE = "done"


# Statuses older v6 releases wrote, read as sprint_plan.py reads them.
LEGACY_STATUSES = {"drafted": SprintStoryStatus.READY_FOR_DEV, "contexted": SprintStoryStatus.IN_PROGRESS}


@dataclass(frozen=True)
class SprintStory:
    key: str
    epic: int
    story: int
    slug: str
    status: SprintStoryStatus
    raw_status: str  # as written, e.g. "drafted"


@dataclass(frozen=True)
class RefusedKey:
    key: str
    reason: str


@dataclass(frozen=True)
class SprintStatus:
    stories: dict[tuple[int, int], SprintStory]  # in file order
    refused: tuple[RefusedKey, ...] = ()
    project: str | None = None


@dataclass(frozen=True)
class StoryChange:
    """One story's entry between two versions of the file. `before` is None for a new entry; `after`
    is None for an entry that is gone (a retitled story shows up as a key change instead)."""

    epic: int
    story: int
    before: SprintStory | None
    after: SprintStory | None

    @property
    def status_changed(self) -> bool:
        old = self.before.status if self.before else None
        new = self.after.status if self.after else None
        return old != new


def parse_story_key(key: str) -> tuple[int, int, str]:
    """(epic, story, slug) of a story key such as `1-4-sign-in`; ValueError with the reason otherwise."""
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"the key is longer than {MAX_KEY_LENGTH} characters")
    match = _STORY_KEY.fullmatch(key)
    if match is None:
        raise ValueError("not a story key of the form N-M-slug")
    epic_text, story_text, suffix, slug = match.groups()
    if suffix:
        raise ValueError(
            f"story {epic_text}.{story_text}{suffix} has a letter suffix; the marketplace numbers stories "
            f"with two integers, so renumber it (for example {epic_text}-{int(story_text) + 1}-{slug})"
        )
    epic, story = int(epic_text), int(story_text)
    if epic > MAX_INT or story > MAX_INT:
        raise ValueError(f"story number {epic_text}.{story_text} is larger than the marketplace can store")
    return epic, story, slug


def parse_sprint_status(text: str | bytes, path: str = "sprint-status.yaml") -> SprintStatus:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_BYTES:
        raise SprintStatusError(f"{path} is {len(raw)} bytes, over the {MAX_BYTES}-byte limit")
    try:
        data: Any = safe_yaml.load(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SprintStatusError(f"{path} is not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise SprintStatusError(f"{path} is not valid YAML ({describe_yaml_error(exc)})") from exc
    if not isinstance(data, dict):
        raise SprintStatusError(f"{path} should be a mapping with a development_status map")
    entries = data.get("development_status")
    if entries is None:
        raise SprintStatusError(
            f"{path} has no development_status map (the format bmad-sprint-planning writes); nothing was read"
        )
    if not isinstance(entries, dict):
        raise SprintStatusError(f"{path}: development_status should be a map of keys to statuses")

    candidates: dict[tuple[int, int], list[SprintStory]] = {}
    refused: list[RefusedKey] = []
    for raw_key, raw_value in entries.items():
        key = str(raw_key)[:MAX_KEY_LENGTH]
        if not isinstance(raw_key, str):
            refused.append(RefusedKey(key, "not a story key of the form N-M-slug"))
            continue
        if _EPIC_KEY.fullmatch(raw_key) or _RETRO_KEY.fullmatch(raw_key):
            continue  # epics and retrospectives are not marketplace stories
        try:
            epic, number, slug = parse_story_key(raw_key)
        except ValueError as exc:
            refused.append(RefusedKey(key, str(exc)))
            continue
        status = _status(raw_value)
        if status is None:
            allowed = ", ".join(s.value for s in SprintStoryStatus)
            refused.append(RefusedKey(key, f"status {str(raw_value)[:80]!r} is not one of {allowed}"))
            continue
        entry = SprintStory(raw_key, epic, number, slug, status, raw_value.strip())
        candidates.setdefault((epic, number), []).append(entry)
    stories: dict[tuple[int, int], SprintStory] = {}
    for (epic, number), found in candidates.items():
        if len(found) == 1:
            stories[(epic, number)] = found[0]
            continue
        # Which of two keys is the story is a guess; money moves on it, so neither counts.
        for entry in found:
            others = ", ".join(e.key for e in found if e is not entry)
            refused.append(
                RefusedKey(entry.key, f"story {epic}.{number} is also named by {others}; keep one key per story")
            )
    project = data.get("project")
    return SprintStatus(stories, tuple(refused), project if isinstance(project, str) else None)


def _status(value: object) -> SprintStoryStatus | None:
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if word in LEGACY_STATUSES:
        return LEGACY_STATUSES[word]
    try:
        return SprintStoryStatus(word)
    except ValueError:
        return None


def diff(before: SprintStatus | None, after: SprintStatus) -> list[StoryChange]:
    """Every story whose entry differs between two versions (status or key), in the new file's order,
    then the stories that are gone. Several stories may change at once, and statuses may jump."""
    old = before.stories if before else {}
    changes = [
        StoryChange(ident[0], ident[1], old.get(ident), entry)
        for ident, entry in after.stories.items()
        if old.get(ident) != entry
    ]
    changes += [StoryChange(i[0], i[1], entry, None) for i, entry in old.items() if i not in after.stories]
    return changes
