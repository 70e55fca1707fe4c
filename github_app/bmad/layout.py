"""Which BMAD layout a repository uses, and where its files are: v4, v6, both, or neither.

- v4 keeps `.bmad-core/core-config.yaml` (`devStoryLocation`, `qa.qaLocation`); see `core_config`.
- v6 keeps `_bmad/bmm/config.yaml` (read by sprint-planning, create-story, dev-story and code-review,
  the skills that write `sprint-status.yaml`) and the central `_bmad/config.toml` with its human overrides
  `_bmad/custom/config.toml` (read by bmad-build), merged in that order. The test architect's module has
  `_bmad/tea/config.yaml`. Older v6 alphas installed into `.bmad/` and named the folder `sprint_artifacts`.
  Values keep a literal `{project-root}/` prefix and may refer to `{output_folder}`.
- A repository migrating from v4 holds both; one with neither gets the defaults of both.

For each v6 key the module `config.yaml` wins, then the custom TOML, then the central TOML, then BMAD's
default: the YAML is what the skills that write sprint status read. The app's repository configuration
overrides every path. Nothing here stops the app: what cannot be read is listed in `problems` and the
default applies. No I/O: the caller fetches the files named in `LAYOUT_FILES`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from github_app.bmad import safe_yaml
from github_app.bmad.core_config import (
    CORE_CONFIG_PATH,
    BmadPaths,
    describe_yaml_error,
    normalize_dir,
    parse_core_config,
)
from github_app.bmad.planning import PlanningPaths, planning_paths

V6_MODULE_CONFIG = "_bmad/bmm/config.yaml"
V6_ALPHA_MODULE_CONFIG = ".bmad/bmm/config.yaml"
V6_CENTRAL_CONFIG = "_bmad/config.toml"
V6_CUSTOM_CONFIG = "_bmad/custom/config.toml"
V6_TEA_CONFIG = "_bmad/tea/config.yaml"
V6_CONFIG_FILES = (V6_MODULE_CONFIG, V6_ALPHA_MODULE_CONFIG, V6_CENTRAL_CONFIG, V6_CUSTOM_CONFIG, V6_TEA_CONFIG)
LAYOUT_FILES = (CORE_CONFIG_PATH, *V6_CONFIG_FILES)

DEFAULT_OUTPUT_FOLDER = "_bmad-output"
SPRINT_STATUS_NAME = "sprint-status.yaml"
GATE_DECISION_NAME = "gate-decision.json"
CONFIG_MAX_BYTES = 64 * 1024

_PROJECT_ROOT = re.compile(r"^\{project-root\}(?:[/\\]+|$)")
_OUTPUT_FOLDER = "{output_folder}"
_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|[/\\~])")


@dataclass(frozen=True)
class PathOverrides:
    """The repository configuration's path keys (None: not set)."""

    story_dir: str | None = None
    gate_dir: str | None = None
    implementation_dir: str | None = None
    sprint_status: str | None = None
    test_artifacts_dir: str | None = None
    # The repository configuration's `stage_documents`: (stage, paths) pairs.
    stage_documents: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class BmadLayout:
    kind: str  # "v4", "v6", "both" or "none"
    v4_config: str | None
    v6_configs: tuple[str, ...]
    story_dir: str  # v4 story files
    gate_dir: str  # v4 gate files
    implementation_dir: str  # v6 story files, build specs and sprint status
    sprint_status_path: str
    test_artifacts_dir: str
    problems: tuple[str, ...] = ()
    overridden: tuple[str, ...] = field(default=())
    planning: PlanningPaths = field(default_factory=lambda: planning_paths(None), compare=False)

    @property
    def gate_decision_path(self) -> str:
        return f"{self.test_artifacts_dir}/{GATE_DECISION_NAME}"

    @property
    def v4_paths(self) -> BmadPaths:
        return BmadPaths(story_dir=self.story_dir, gate_dir=self.gate_dir)

    def describe(self, branch: str = "the default branch") -> str:
        """One line for the check run and the PR comment: which layout, found where, read from where."""
        v4 = f"story files in {self.story_dir}/, gate files in {self.gate_dir}/"
        v6 = (
            f"sprint status {self.sprint_status_path}, story files and specs in {self.implementation_dir}/, "
            f"gate decisions {self.gate_decision_path}"
        )
        if self.kind == "both":
            text = f"BMAD v4 ({self.v4_config}) and v6 ({', '.join(self.v6_configs)}) on {branch}: v4 {v4}; v6 {v6}"
        elif self.kind == "v4":
            text = f"BMAD v4 ({self.v4_config}) on {branch}: {v4}"
        elif self.kind == "v6":
            text = f"BMAD v6 ({', '.join(self.v6_configs)}) on {branch}: {v6}"
        else:
            text = f"no BMAD configuration on {branch}; default folders: v4 {v4}; v6 {v6}"
        if self.overridden:
            text += f" (set by .github/bmad-marketplace.yml: {', '.join(self.overridden)})"
        return text


def detect_layout(files: Mapping[str, bytes | None], overrides: PathOverrides | None = None) -> BmadLayout:
    """The layout from the contents of `LAYOUT_FILES` on the default branch (absent files: None or
    missing from `files`)."""
    overrides = overrides or PathOverrides()
    problems: list[str] = []

    v4_text = files.get(CORE_CONFIG_PATH)
    core = parse_core_config(v4_text)
    problems += core.problems

    found_v6 = tuple(path for path in V6_CONFIG_FILES if files.get(path) is not None)
    module_path = V6_MODULE_CONFIG if files.get(V6_MODULE_CONFIG) is not None else V6_ALPHA_MODULE_CONFIG
    module = _yaml_mapping(files.get(module_path), module_path, problems)
    tea = _yaml_mapping(files.get(V6_TEA_CONFIG), V6_TEA_CONFIG, problems)
    central = _toml_mapping(files.get(V6_CENTRAL_CONFIG), V6_CENTRAL_CONFIG, problems)
    custom = _toml_mapping(files.get(V6_CUSTOM_CONFIG), V6_CUSTOM_CONFIG, problems)

    def lookup(yaml_doc: dict[str, Any], yaml_keys: tuple[str, ...], table: tuple[str, ...]) -> tuple[Any, str]:
        for key in yaml_keys:
            if key in yaml_doc:
                return yaml_doc[key], key
        for source, name in ((custom, V6_CUSTOM_CONFIG), (central, V6_CENTRAL_CONFIG)):
            section = _table(source, table)
            for key in yaml_keys:
                if key in section:
                    return section[key], f"{name} [{'.'.join(table)}] {key}"
        return None, ""

    output_raw, output_key = lookup(module, ("output_folder",), ("core",))
    if output_raw is None:
        output_raw, output_key = lookup(module, ("output_folder",), ("modules", "bmm"))
    output_folder = _resolve(output_raw, None, DEFAULT_OUTPUT_FOLDER, output_key or "output_folder", problems)

    impl_raw, impl_key = lookup(module, ("implementation_artifacts", "sprint_artifacts"), ("modules", "bmm"))
    implementation_dir = _resolve(
        impl_raw, output_folder, f"{output_folder}/implementation-artifacts", impl_key, problems
    )
    planning_raw, planning_key = lookup(module, ("planning_artifacts",), ("modules", "bmm"))
    planning_dir = _resolve(
        planning_raw, output_folder, f"{output_folder}/planning-artifacts", planning_key, problems
    )
    tea_raw, tea_key = lookup(tea, ("test_artifacts",), ("modules", "tea"))
    test_artifacts_dir = _resolve(tea_raw, output_folder, f"{output_folder}/test-artifacts", tea_key, problems)

    overridden: list[str] = []
    story_dir, gate_dir = core.story_dir, core.gate_dir
    sprint_status_path = f"{implementation_dir}/{SPRINT_STATUS_NAME}"
    if overrides.story_dir:
        story_dir = overrides.story_dir
        overridden.append("story_dir")
    if overrides.gate_dir:
        gate_dir = overrides.gate_dir
        overridden.append("gate_dir")
    if overrides.implementation_dir:
        implementation_dir = overrides.implementation_dir
        sprint_status_path = f"{implementation_dir}/{SPRINT_STATUS_NAME}"
        overridden.append("implementation_dir")
    if overrides.sprint_status:
        sprint_status_path = overrides.sprint_status
        overridden.append("sprint_status")
    if overrides.test_artifacts_dir:
        test_artifacts_dir = overrides.test_artifacts_dir
        overridden.append("test_artifacts_dir")

    has_v4 = v4_text is not None
    kind = "both" if has_v4 and found_v6 else "v4" if has_v4 else "v6" if found_v6 else "none"
    return BmadLayout(
        kind=kind,
        v4_config=CORE_CONFIG_PATH if has_v4 else None,
        v6_configs=found_v6,
        story_dir=story_dir,
        gate_dir=gate_dir,
        implementation_dir=implementation_dir,
        sprint_status_path=sprint_status_path,
        test_artifacts_dir=test_artifacts_dir,
        problems=tuple(problems),
        overridden=tuple(overridden),
        planning=planning_paths(v4_text, planning_dir, dict(overrides.stage_documents)),
    )


def _yaml_mapping(text: bytes | None, path: str, problems: list[str]) -> dict[str, Any]:
    if text is None:
        return {}
    if len(text) > CONFIG_MAX_BYTES:
        limit = f"over the {CONFIG_MAX_BYTES}-byte limit"
        problems.append(f"{path} is {len(text)} bytes, {limit}; using the default folders")
        return {}
    try:
        data = safe_yaml.load(text.decode("utf-8-sig"))
    except UnicodeDecodeError:
        problems.append(f"{path} is not UTF-8 text; using the default folders")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"{path} is not valid YAML ({describe_yaml_error(exc)}); using the default folders")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path} is not a mapping of keys to values; using the default folders")
        return {}
    return data


def _toml_mapping(text: bytes | None, path: str, problems: list[str]) -> dict[str, Any]:
    if text is None:
        return {}
    if len(text) > CONFIG_MAX_BYTES:
        problems.append(f"{path} is {len(text)} bytes, over the {CONFIG_MAX_BYTES}-byte limit; ignored")
        return {}
    try:
        return tomllib.loads(text.decode("utf-8-sig"))
    except UnicodeDecodeError:
        problems.append(f"{path} is not UTF-8 text; ignored")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path} is not valid TOML ({exc}); ignored")
    return {}


def _table(doc: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    node: Any = doc
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _resolve(value: object, output_folder: str | None, default: str, key: str, problems: list[str]) -> str:
    """A configured folder as a repository path: `{project-root}/` dropped, `{output_folder}` filled in."""
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(f"{key} should be a folder path, not {value!r}; using {default}")
        return default
    text = _PROJECT_ROOT.sub("", value.strip())
    if output_folder is not None:
        text = text.replace(_OUTPUT_FOLDER, output_folder)
    if "{" in text or "}" in text:
        problems.append(f"{key} {value!r} refers to a setting the app does not know; using {default}")
        return default
    if _ABSOLUTE.match(text):
        problems.append(f"{key} {value!r} is a path on someone's computer, not in the repository; using {default}")
        return default
    try:
        return normalize_dir(text)
    except ValueError as exc:
        problems.append(f"{key}: {exc}; using {default}")
        return default
