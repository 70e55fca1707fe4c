r"""The app's optional per-repository configuration: `.github/bmad-marketplace.yml`.

Every key is optional:

```yaml
story_dir: docs/stories            # overrides devStoryLocation from .bmad-core/core-config.yaml
gate_dir: docs/qa/gates            # overrides qa.qaLocation + "/gates"
branch_pattern: '(?P<epic>\d+)\.(?P<story>\d+)'   # how a branch name names its story
accepted_gates: [PASS, WAIVED, CONCERNS]          # PASS is required; FAIL is never accepted
default_budget: {min: 500, max: 1500, currency: USD}   # budget of the published developer opportunity
status_aliases: {"QA Approved": Done, "Pronto": Approved}  # story statuses in this repo's own words
release_branches: [release]        # besides the default branch, merges into these complete a story
implementation_dir: _bmad-output/implementation-artifacts   # overrides BMAD v6 implementation_artifacts
sprint_status: _bmad-output/implementation-artifacts/sprint-status.yaml
test_artifacts_dir: _bmad-output/test-artifacts  # where TEA writes gate-decision.json
qa_sources: [review, gate_decision, gate_file]    # what counts as QA's acceptance (default: all)
```

A branch pattern either names its groups `epic` and `story`, has two groups (epic, then story), or has
one group that captures the whole `1.3`. A configured pattern runs on RE2 (linear time, whatever the
pattern and the branch name), so RE2's syntax applies: no lookaround and no backreferences. A pattern
RE2 cannot compile is reported and the default applies; the default itself is a vetted Python pattern.

Configuration is written by people and read on every event, so it never stops the app: each invalid or
unknown key is listed in `RepoConfig.problems` (shown on the check run) and that key's default applies.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import re2
import yaml

from github_app.bmad import safe_yaml
from github_app.bmad.core_config import MAX_CONFIG_BYTES, BmadPaths, describe_yaml_error, normalize_dir
from github_app.bmad.gate_file import GateDecision
from github_app.bmad.layout import PathOverrides
from github_app.bmad.planning import parse_stage_documents
from github_app.bmad.statuses import StoryFileStatus, parse_status_aliases
from github_app.bounded import bounded_repr, clip, storable_number

REPO_CONFIG_PATH = ".github/bmad-marketplace.yml"

# Finds 1.3 in story/1.3-user-auth, feature/1.3.user-auth or 1.3; not in release/v1.3.0 or 1.3.0.
DEFAULT_BRANCH_PATTERN = r"(?:^|[/_-])(?P<epic>\d+)\.(?P<story>\d+)(?=$|[-_/]|\.(?!\d))"
DEFAULT_ACCEPTED_GATES: frozenset[GateDecision] = frozenset({GateDecision.PASS, GateDecision.WAIVED})
ACCEPTABLE_GATES: frozenset[GateDecision] = frozenset({GateDecision.PASS, GateDecision.WAIVED, GateDecision.CONCERNS})
MAX_PATTERN_LENGTH = 300
# Git allows longer ref names, but no branch that names a story needs more; the rest is not scanned.
MAX_BRANCH_CHARS = 1024
MAX_REPORTED = 5  # unknown keys or bad values listed one by one; the rest are counted

_KNOWN_KEYS = (
    "story_dir",
    "gate_dir",
    "branch_pattern",
    "accepted_gates",
    "default_budget",
    "status_aliases",
    "release_branches",
    "implementation_dir",
    "sprint_status",
    "test_artifacts_dir",
    "qa_sources",
    "stage_documents",
    "stage_reviewers",
    "validation_threshold",
)
# Where QA's acceptance may come from: the QA's pull request review, TEA's gate-decision.json, v4 gate files.
QA_SOURCES = ("review", "gate_decision", "gate_file")
_BUDGET_KEYS = ("min", "max", "currency")
DEFAULT_VALIDATION_THRESHOLD = 7


@dataclass(frozen=True)
class RepoConfig:
    story_dir: str | None = None
    gate_dir: str | None = None
    branch_pattern: str = DEFAULT_BRANCH_PATTERN
    accepted_gates: frozenset[GateDecision] = DEFAULT_ACCEPTED_GATES
    # The JSON shape stored in Opportunity.budget: {"min": number, "max": number, "currency": str}.
    default_budget: dict[str, Any] | None = field(default=None, hash=False)
    # Normalized written status -> template status; see github_app.bmad.statuses.
    status_aliases: dict[str, StoryFileStatus] = field(default_factory=dict, hash=False)
    release_branches: tuple[str, ...] = ()
    implementation_dir: str | None = None
    sprint_status: str | None = None
    test_artifacts_dir: str | None = None
    qa_sources: frozenset[str] = frozenset(QA_SOURCES)
    # Planning stages: where each stage's documents are (see bmad.planning), and the project's PMs or
    # architects (GitHub logins) the client names to review stage deliverables besides themselves.
    stage_documents: tuple[tuple[str, tuple[str, ...]], ...] = ()
    stage_reviewers: tuple[str, ...] = ()
    # The `/bmad validate` score (out of 10) from which a DRAFT story is approved.
    validation_threshold: int = DEFAULT_VALIDATION_THRESHOLD
    problems: tuple[str, ...] = ()

    @property
    def path_overrides(self) -> PathOverrides:
        return PathOverrides(
            story_dir=self.story_dir,
            gate_dir=self.gate_dir,
            implementation_dir=self.implementation_dir,
            sprint_status=self.sprint_status,
            test_artifacts_dir=self.test_artifacts_dir,
            stage_documents=self.stage_documents,
        )


def effective_paths(core: BmadPaths, repo: RepoConfig) -> BmadPaths:
    """Story and gate folders after the repo configuration's overrides, with both files' problems."""
    return BmadPaths(
        story_dir=repo.story_dir or core.story_dir,
        gate_dir=repo.gate_dir or core.gate_dir,
        problems=core.problems + repo.problems,
    )


class BranchPattern(Protocol):
    """What the linker needs of a compiled pattern; both `re` and `re2` patterns have it."""

    @property
    def groups(self) -> int: ...

    @property
    def groupindex(self) -> Mapping[str, int]: ...

    def finditer(self, string: str) -> Iterator[Any]: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the repository's problem, reported on its check run


@functools.lru_cache(maxsize=256)
def compile_branch_pattern(pattern: str) -> BranchPattern:
    """The compiled branch pattern. Raises ValueError when it cannot be used.

    Only the built-in default runs on Python's backtracking engine; any configured pattern runs on RE2,
    whose matching time is linear in the branch name whatever the pattern, so a repository cannot
    configure a pattern that stalls the worker.
    """
    if pattern == DEFAULT_BRANCH_PATTERN:
        return re.compile(pattern)
    try:
        compiled: BranchPattern = re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(clip(str(reason), 120)) from exc
    return compiled


def check_branch_pattern(pattern: str) -> str | None:
    """Why `pattern` cannot be used as a branch pattern, or None when it can."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"branch_pattern is longer than {MAX_PATTERN_LENGTH} characters"
    try:
        compiled = compile_branch_pattern(pattern)
    except ValueError as exc:
        return (
            f"branch_pattern {bounded_repr(pattern)} is not a valid regular expression ({exc}); "
            f"branch patterns use RE2 syntax, which has no lookaround or backreferences"
        )
    named = {"epic", "story"} & set(compiled.groupindex)
    if len(named) == 1:
        missing = ({"epic", "story"} - named).pop()
        return f"branch_pattern {bounded_repr(pattern)} names a group {named.pop()!r} but no group {missing!r}"
    if compiled.groups == 0:
        return (
            f"branch_pattern {bounded_repr(pattern)} has no group; use (?P<epic>\\d+)\\.(?P<story>\\d+) "
            f"or one group around the story id"
        )
    return None


def story_ids_in_branch(pattern: str | BranchPattern, branch: str) -> list[tuple[int, int]]:
    """Every distinct `(epic, story)` the pattern finds in a branch name, in order of appearance.

    More than one means the branch is ambiguous; the caller decides what to do with that. Numbers the
    marketplace cannot store (above 2^31-1) are not stories.
    """
    compiled = compile_branch_pattern(pattern) if isinstance(pattern, str) else pattern
    found: list[tuple[int, int]] = []
    for match in compiled.finditer(branch[:MAX_BRANCH_CHARS]):
        if {"epic", "story"} <= set(compiled.groupindex):
            epic, story = match["epic"], match["story"]
        elif compiled.groups >= 2:
            epic, story = match.group(1), match.group(2)
        elif compiled.groups == 1:
            whole = re.fullmatch(r"(\d+)\.(\d+)", match.group(1) or "")
            if whole is None:
                continue
            epic, story = whole.group(1), whole.group(2)
        else:
            continue
        epic_number, story_number = storable_number(epic), storable_number(story)
        if epic_number is None or story_number is None:
            continue
        candidate = (epic_number, story_number)
        if candidate not in found:
            found.append(candidate)
    return found


def parse_repo_config(text: str | bytes | None) -> RepoConfig:
    """The repo configuration from the text of `.github/bmad-marketplace.yml` (None: the file is absent)."""
    if text is None:
        return RepoConfig()
    if len(text) > MAX_CONFIG_BYTES:
        too_big = f"{REPO_CONFIG_PATH} is over the {MAX_CONFIG_BYTES}-byte limit; using the defaults"
        return RepoConfig(problems=(too_big,))
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            return RepoConfig(problems=(f"{REPO_CONFIG_PATH} is not UTF-8 text; using the defaults",))
    try:
        data: Any = safe_yaml.load(text)
    except yaml.YAMLError as exc:
        where = describe_yaml_error(exc)
        return RepoConfig(problems=(f"{REPO_CONFIG_PATH} is not valid YAML ({where}); using the defaults",))
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        return RepoConfig(problems=(f"{REPO_CONFIG_PATH} should be a mapping of keys to values; using the defaults",))

    problems: list[str] = []
    unknown = [key for key in data if key not in _KNOWN_KEYS]
    for key in unknown[:MAX_REPORTED]:
        problems.append(f"unknown key {bounded_repr(key)} (known keys: {', '.join(_KNOWN_KEYS)}); ignored")
    if len(unknown) > MAX_REPORTED:
        problems.append(f"{len(unknown) - MAX_REPORTED} more unknown keys; ignored")

    branch_pattern = DEFAULT_BRANCH_PATTERN
    raw_pattern = data.get("branch_pattern")
    if raw_pattern is not None:
        problem = (
            check_branch_pattern(raw_pattern)
            if isinstance(raw_pattern, str)
            else f"branch_pattern should be a regular expression string, not {bounded_repr(raw_pattern)}"
        )
        if problem is None:
            branch_pattern = raw_pattern
        else:
            problems.append(f"{problem}; using the default pattern")

    return RepoConfig(
        story_dir=_folder(data, "story_dir", problems),
        gate_dir=_folder(data, "gate_dir", problems),
        branch_pattern=branch_pattern,
        accepted_gates=_accepted_gates(data.get("accepted_gates"), problems),
        default_budget=_budget(data.get("default_budget"), problems),
        status_aliases=parse_status_aliases(data.get("status_aliases"), problems),
        release_branches=_release_branches(data.get("release_branches"), problems),
        implementation_dir=_folder(data, "implementation_dir", problems),
        sprint_status=_file(data, "sprint_status", problems),
        test_artifacts_dir=_folder(data, "test_artifacts_dir", problems),
        qa_sources=_qa_sources(data.get("qa_sources"), problems),
        stage_documents=tuple(parse_stage_documents(data.get("stage_documents"), problems).items()),
        stage_reviewers=_logins(data.get("stage_reviewers"), problems),
        validation_threshold=_validation_threshold(data.get("validation_threshold"), problems),
        problems=tuple(problems),
    )


def _logins(value: object, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items) or len(items) > 20:
        problems.append(f"stage_reviewers should be a list of up to 20 logins, not {bounded_repr(value)}; ignored")
        return ()
    return tuple(dict.fromkeys(str(i).strip().removeprefix("@") for i in items))


def _validation_threshold(value: object, problems: list[str]) -> int:
    if value is None:
        return DEFAULT_VALIDATION_THRESHOLD
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        problems.append(
            f"validation_threshold should be a whole number from 1 to 10, not {bounded_repr(value)}; "
            f"using {DEFAULT_VALIDATION_THRESHOLD}"
        )
        return DEFAULT_VALIDATION_THRESHOLD
    return value


def _release_branches(value: object, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        problems.append(f"release_branches should be a list of branch names, not {value!r}; only the default branch")
        return ()
    return tuple(dict.fromkeys(item.strip() for item in value))


def _folder(data: dict[Any, Any], key: str, problems: list[str]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{key} should be a folder path, not {bounded_repr(value)}; using the BMAD core config")
        return None
    try:
        return normalize_dir(value)
    except ValueError as exc:
        problems.append(f"{key}: {exc}; using the BMAD core config")
        return None


def _file(data: dict[Any, Any], key: str, problems: list[str]) -> str | None:
    # A file path follows the same rules as a folder: inside the repository, not empty.
    return _folder(data, key, problems)


def _qa_sources(value: object, problems: list[str]) -> frozenset[str]:
    default = frozenset(QA_SOURCES)
    items = [value] if isinstance(value, str) else value
    if value is None:
        return default
    if not isinstance(items, list) or not items:
        drawn = ", ".join(QA_SOURCES)
        problems.append(f"qa_sources should be a list drawn from {drawn}, not {bounded_repr(value)}; using all")
        return default
    bad = [item for item in items if item not in QA_SOURCES]
    if bad:
        named = ", ".join(bounded_repr(item, 40) for item in bad[:5])
        problems.append(f"qa_sources: {named} not one of {', '.join(QA_SOURCES)}; using all")
        return default
    return frozenset(str(item) for item in items)


def _accepted_gates(value: object, problems: list[str]) -> frozenset[GateDecision]:
    if value is None:
        return DEFAULT_ACCEPTED_GATES
    default = ", ".join(sorted(DEFAULT_ACCEPTED_GATES))
    items: list[object]
    if isinstance(value, str):
        items = [part for part in re.split(r"[,\s]+", value) if part]
    elif isinstance(value, list):
        items = value
    else:
        problems.append(f"accepted_gates should be a list such as [PASS], not {bounded_repr(value)}; using {default}")
        return DEFAULT_ACCEPTED_GATES

    chosen: set[GateDecision] = set()
    bad: list[str] = []
    for item in items:
        try:
            decision = GateDecision(str(item).strip().upper())
        except ValueError:
            bad.append(f"{bounded_repr(item)} is not a gate decision")
            continue
        if decision not in ACCEPTABLE_GATES:
            bad.append(f"{decision} can never be accepted")
            continue
        chosen.add(decision)
    if chosen and GateDecision.PASS not in chosen:
        bad.append("PASS must be accepted")
    if not items:
        bad.append("the list is empty")
    if bad:
        more = [f"{len(bad) - MAX_REPORTED} more"] if len(bad) > MAX_REPORTED else []
        problems.append(f"accepted_gates: {'; '.join(bad[:MAX_REPORTED] + more)}; using {default}")
        return DEFAULT_ACCEPTED_GATES
    return frozenset(chosen)


def _budget(value: object, problems: list[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(
            f"default_budget should be {{min, max, currency}}, not {bounded_repr(value)}; no default budget"
        )
        return None
    bad: list[str] = [f"unknown key {bounded_repr(key)}" for key in value if key not in _BUDGET_KEYS]
    amounts: dict[str, int | float] = {}
    for key in ("min", "max"):
        amount = value.get(key)
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount < float("inf"):
            bad.append(f"{key} should be a number of at least 0, not {bounded_repr(amount)}")
        else:
            amounts[key] = amount
    if len(amounts) == 2 and amounts["min"] > amounts["max"]:
        bad.append(f"min {amounts['min']} is more than max {amounts['max']}")
    currency = value.get("currency")
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if not re.fullmatch(r"[A-Z0-9]{2,10}", code):
        bad.append(f"currency should be a code such as USD or USDC, not {bounded_repr(currency)}")
    if bad:
        more = [f"{len(bad) - MAX_REPORTED} more"] if len(bad) > MAX_REPORTED else []
        problems.append(f"default_budget: {'; '.join(bad[:MAX_REPORTED] + more)}; no default budget")
        return None
    return {"min": amounts["min"], "max": amounts["max"], "currency": code}
