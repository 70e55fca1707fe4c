"""Where a BMAD repository keeps the planning stages' documents, and what each one is. No I/O.

- analyst (`brief`): `docs/brief.md`; v6 `product-brief*.md`.
- pm (`prd`): core-config `prd.prdFile` and its sharded `prd.prdShardedLocation/`; v6 `prd.md`, `prd/`.
- architect (`architecture`): `architecture.architectureFile`, `architecture.architectureShardedLocation/`;
  v6 `architecture.md`, `architecture/`.
- ux (`front-end-spec`): `docs/front-end-spec.md`; v6 `ux-design-specification.md`.

v6 files are in its `planning_artifacts` folder (default `_bmad-output/planning-artifacts`). Both
layouts are read at once (a repository may hold both). The repository configuration's
`stage_documents` replaces a stage's list: `{pm: [docs/requirements.md, docs/requirements/]}`; an
entry ending in `/` is a folder (every file under it, the sharded form), one with `*` a file-name
pattern.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from github_app.bmad import safe_yaml
from github_app.bmad.core_config import MAX_CONFIG_BYTES, normalize_dir, normalize_path
from github_app.bounded import bounded_repr

PLANNING_STAGES = ("analyst", "pm", "architect", "ux")
DOCUMENT_TYPES = {"analyst": "brief", "pm": "prd", "architect": "architecture", "ux": "front-end-spec"}
DEFAULT_PLANNING_DIR = "_bmad-output/planning-artifacts"
MAX_ENTRIES = 20  # per stage in the repository configuration

_MIME_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".json": "application/json",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".csv": "text/csv",
}


def mime_type(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return _MIME_TYPES.get(name[dot:], "application/octet-stream") if dot > 0 else "application/octet-stream"


@dataclass(frozen=True)
class StageDocuments:
    """One stage's document locations: files, folders (sharded: every file below) and file-name patterns."""

    stage: str
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @property
    def document_type(self) -> str:
        return DOCUMENT_TYPES[self.stage]

    def matches(self, path: str) -> bool:
        path = normalize_path(path)
        if path in self.files or any(path.startswith(folder + "/") for folder in self.folders):
            return True
        folder, _, name = path.rpartition("/")
        for pattern in self.patterns:
            p_folder, _, p_name = pattern.rpartition("/")
            if folder == p_folder and fnmatch.fnmatchcase(name, p_name):
                return True
        return False

    def describe(self) -> str:
        return ", ".join([*self.files, *(f"{f}/" for f in self.folders), *self.patterns])


@dataclass(frozen=True)
class PlanningPaths:
    stages: Mapping[str, StageDocuments]
    problems: tuple[str, ...] = ()

    def of(self, stage: str) -> StageDocuments:
        return self.stages.get(stage) or StageDocuments(stage)

    def stages_touched(self, paths: list[str]) -> list[str]:
        """The planning stages whose documents any of `paths` is, in stage order."""
        return [s for s in PLANNING_STAGES if any(self.of(s).matches(p) for p in paths)]


def _core_value(data: Mapping[str, Any], section: str, key: str, default: str, problems: list[str]) -> str | None:
    block = data.get(section)
    value = block.get(key) if isinstance(block, dict) else None
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(f"{section}.{key} should be a path, not {bounded_repr(value)}; using {default}")
        return default
    try:
        return normalize_dir(value)
    except ValueError as exc:
        problems.append(f"{section}.{key}: {exc}; using {default}")
        return default


def _core_mapping(core_text: bytes | str | None) -> dict[str, Any]:
    if core_text is None or len(core_text) > MAX_CONFIG_BYTES:
        return {}  # the story layout already reports a file too big to read
    try:
        text = core_text.decode("utf-8-sig") if isinstance(core_text, bytes) else core_text
        data = safe_yaml.load(text)
    except (UnicodeDecodeError, yaml.YAMLError):
        return {}  # reported by the core-config parser
    return data if isinstance(data, dict) else {}


def parse_stage_documents(value: object, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """The repository configuration's `stage_documents`: stage -> paths (folders end with `/`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"stage_documents should map stages to lists of paths, not {bounded_repr(value)}; ignored")
        return {}
    chosen: dict[str, tuple[str, ...]] = {}
    for stage, entries in value.items():
        if stage not in PLANNING_STAGES:
            problems.append(
                f"stage_documents: {bounded_repr(stage)} is not a planning stage "
                f"({', '.join(PLANNING_STAGES)}); ignored"
            )
            continue
        items = [entries] if isinstance(entries, str) else entries
        if not isinstance(items, list) or not items or len(items) > MAX_ENTRIES:
            problems.append(f"stage_documents.{stage} should be a list of 1 to {MAX_ENTRIES} paths; ignored")
            continue
        paths: list[str] = []
        for item in items:
            if not isinstance(item, str):
                problems.append(f"stage_documents.{stage}: {bounded_repr(item)} is not a path; ignored")
                continue
            try:
                normalized = normalize_dir(item)
            except ValueError as exc:
                problems.append(f"stage_documents.{stage}: {exc}; ignored")
                continue
            paths.append(normalized + ("/" if item.rstrip().endswith(("/", "\\")) else ""))
        if paths:
            chosen[str(stage)] = tuple(paths)
    return chosen


def _from_entries(stage: str, entries: tuple[str, ...]) -> StageDocuments:
    files = tuple(e for e in entries if not e.endswith("/") and "*" not in e)
    folders = tuple(e.rstrip("/") for e in entries if e.endswith("/"))
    patterns = tuple(e for e in entries if not e.endswith("/") and "*" in e)
    return StageDocuments(stage, files, folders, patterns)


def planning_paths(
    core_text: bytes | str | None,
    planning_dir: str = DEFAULT_PLANNING_DIR,
    overrides: Mapping[str, tuple[str, ...]] | None = None,
) -> PlanningPaths:
    """Each planning stage's documents from the v4 core config, the v6 planning folder and the
    repository configuration's overrides."""
    problems: list[str] = []
    core = _core_mapping(core_text)
    prd_file = _core_value(core, "prd", "prdFile", "docs/prd.md", problems)
    prd_dir = _core_value(core, "prd", "prdShardedLocation", "docs/prd", problems)
    arch_file = _core_value(core, "architecture", "architectureFile", "docs/architecture.md", problems)
    arch_dir = _core_value(core, "architecture", "architectureShardedLocation", "docs/architecture", problems)
    v6 = planning_dir
    stages = {
        "analyst": StageDocuments("analyst", ("docs/brief.md",), (), (f"{v6}/product-brief*.md",)),
        "pm": StageDocuments(
            "pm",
            tuple(p for p in (prd_file, f"{v6}/prd.md") if p),
            tuple(p for p in (prd_dir, f"{v6}/prd") if p),
        ),
        "architect": StageDocuments(
            "architect",
            tuple(p for p in (arch_file, f"{v6}/architecture.md") if p),
            tuple(p for p in (arch_dir, f"{v6}/architecture") if p),
        ),
        "ux": StageDocuments("ux", ("docs/front-end-spec.md", f"{v6}/ux-design-specification.md")),
    }
    for stage, entries in (overrides or {}).items():
        stages[stage] = _from_entries(stage, entries)
    return PlanningPaths(stages, tuple(f"planning documents: {p}" for p in problems))
