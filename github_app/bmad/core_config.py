"""Where a BMAD repository keeps its story and QA gate files.

BMAD installs `.bmad-core/core-config.yaml` into the repository. Two of its keys matter here:
`devStoryLocation` (story files, default `docs/stories`) and `qa.qaLocation` (default `docs/qa`; gate
files live in its `gates/` folder). The file belongs to BMAD, not to this app, so other keys are ignored
rather than reported. A missing or broken file never stops the app: the defaults apply and the problem is
reported for the check run.

The path helpers here are shared by the other BMAD parsers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from github_app.bmad import safe_yaml
from github_app.bounded import bounded_repr, clip

CORE_CONFIG_PATH = ".bmad-core/core-config.yaml"
DEFAULT_STORY_DIR = "docs/stories"
DEFAULT_QA_DIR = "docs/qa"
GATES_SUBDIR = "gates"
DEFAULT_GATE_DIR = f"{DEFAULT_QA_DIR}/{GATES_SUBDIR}"
# Real core configs are a few kilobytes; a bigger file is refused before it is parsed.
MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class BmadPaths:
    story_dir: str = DEFAULT_STORY_DIR
    gate_dir: str = DEFAULT_GATE_DIR
    problems: tuple[str, ...] = ()


def normalize_dir(value: str) -> str:
    """A repository-relative folder spelled the way git spells paths in payloads.

    Accepts `./docs/stories/`, `/docs/stories` and `docs\\stories` alike, because all of them occur in
    hand-written configuration. Raises ValueError for an empty folder or one that leaves the repository.
    """
    parts: list[str] = []
    for part in value.strip().replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ValueError(f"folder {bounded_repr(value)} leaves the repository")
        parts.append(part)
    if not parts:
        raise ValueError(f"folder {bounded_repr(value)} is empty")
    return "/".join(parts)


def normalize_path(path: str) -> str:
    """A file path in the form used by `normalize_dir`; unlike it, never raises."""
    return "/".join(part for part in path.strip().replace("\\", "/").split("/") if part not in ("", "."))


def is_under(path: str, directory: str) -> bool:
    """True when `path` is inside `directory` (at any depth). Git paths are case-sensitive, so is this."""
    try:
        folder = normalize_dir(directory)
    except ValueError:
        return False
    return normalize_path(path).startswith(folder + "/")


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """One line for a user: where the YAML broke (1-based, as editors count) and why."""
    mark = getattr(exc, "problem_mark", None)
    # The parser quotes the offending text (a tag, a key) whole: clipped, so a hostile file cannot make the
    # message as long as itself.
    problem = clip(str(getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [""])[0]), 200)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


def parse_core_config(text: str | bytes | None) -> BmadPaths:
    """Story and gate folders from the text of `.bmad-core/core-config.yaml` (None: the file is absent)."""
    if text is None:
        return BmadPaths()
    if len(text) > MAX_CONFIG_BYTES:
        return BmadPaths(
            problems=(f"{CORE_CONFIG_PATH} is over the {MAX_CONFIG_BYTES}-byte limit; using the default folders",)
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            return BmadPaths(problems=(f"{CORE_CONFIG_PATH} is not UTF-8 text; using the default folders",))
    try:
        data: Any = safe_yaml.load(text)
    except yaml.YAMLError as exc:
        where = describe_yaml_error(exc)
        problem = f"{CORE_CONFIG_PATH} is not valid YAML ({where}); using the default folders"
        return BmadPaths(problems=(problem,))
    if data is None:
        return BmadPaths()
    if not isinstance(data, dict):
        return BmadPaths(
            problems=(f"{CORE_CONFIG_PATH} is not a mapping of keys to values; using the default folders",)
        )

    problems: list[str] = []
    story_dir = _folder(data.get("devStoryLocation"), "devStoryLocation", DEFAULT_STORY_DIR, problems)

    qa_dir = DEFAULT_QA_DIR
    qa = data.get("qa")
    if qa is not None and not isinstance(qa, dict):
        problems.append(f"{CORE_CONFIG_PATH}: qa should be a mapping with qaLocation; using {DEFAULT_QA_DIR}")
    elif isinstance(qa, dict):
        qa_dir = _folder(qa.get("qaLocation"), "qa.qaLocation", DEFAULT_QA_DIR, problems)
    return BmadPaths(story_dir=story_dir, gate_dir=f"{qa_dir}/{GATES_SUBDIR}", problems=tuple(problems))


def _folder(value: object, key: str, default: str, problems: list[str]) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(
            f"{CORE_CONFIG_PATH}: {key} should be a folder path, not {bounded_repr(value)}; using {default}"
        )
        return default
    try:
        return normalize_dir(value)
    except ValueError as exc:
        problems.append(f"{CORE_CONFIG_PATH}: {key}: {exc}; using {default}")
        return default
