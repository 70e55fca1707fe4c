from __future__ import annotations

import pytest

from github_app.bmad.core_config import (
    BmadPaths,
    is_under,
    normalize_dir,
    parse_core_config,
)
from github_app.bmad.gate_file import GateDecision
from github_app.bmad.repo_config import (
    DEFAULT_ACCEPTED_GATES,
    DEFAULT_BRANCH_PATTERN,
    RepoConfig,
    check_branch_pattern,
    effective_paths,
    parse_repo_config,
    story_ids_in_branch,
)

# An excerpt of the installed bmad-core/core-config.yaml.
CORE_CONFIG = """\
markdownExploder: true
qa:
  qaLocation: docs/quality
prd:
  prdFile: docs/prd.md
  prdVersion: v4
  prdSharded: true
  prdShardedLocation: docs/prd
architecture:
  architectureFile: docs/architecture.md
customTechnicalDocuments: null
devLoadAlwaysFiles:
  - docs/architecture/coding-standards.md
devDebugLog: .ai/debug-log.md
devStoryLocation: planning/stories
slashPrefix: BMad
"""


# core-config.yaml ---------------------------------------------------------------------------------


def test_absent_core_config_gives_the_bmad_defaults() -> None:
    assert parse_core_config(None) == BmadPaths("docs/stories", "docs/qa/gates", ())


def test_core_config_locations_are_read() -> None:
    paths = parse_core_config(CORE_CONFIG)

    assert paths.story_dir == "planning/stories"
    assert paths.gate_dir == "docs/quality/gates"
    assert paths.problems == ()


def test_core_config_without_the_keys_keeps_the_defaults() -> None:
    paths = parse_core_config("slashPrefix: BMad\nqa: {}\n")

    assert (paths.story_dir, paths.gate_dir, paths.problems) == ("docs/stories", "docs/qa/gates", ())


def test_core_config_as_bytes() -> None:
    assert parse_core_config(CORE_CONFIG.encode()).story_dir == "planning/stories"


def test_broken_core_config_falls_back_to_defaults_and_says_where() -> None:
    paths = parse_core_config("devStoryLocation: docs/x\nqa:\n  qaLocation: [unclosed\n")

    assert (paths.story_dir, paths.gate_dir) == ("docs/stories", "docs/qa/gates")
    assert len(paths.problems) == 1
    assert "not valid YAML" in paths.problems[0]
    assert "line " in paths.problems[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- a\n- b\n", "mapping"),
        ("devStoryLocation: 42\n", "devStoryLocation"),
        ("devStoryLocation: ../elsewhere\n", "leaves the repository"),
        ("qa: docs/qa\n", "qa should be a mapping"),
        ("qa: {qaLocation: ''}\n", "empty"),
    ],
)
def test_invalid_core_config_values_are_reported_and_defaulted(text: str, fragment: str) -> None:
    paths = parse_core_config(text)

    assert (paths.story_dir, paths.gate_dir) == ("docs/stories", "docs/qa/gates")
    assert any(fragment in p for p in paths.problems)


def test_one_bad_key_does_not_discard_the_good_one() -> None:
    paths = parse_core_config("devStoryLocation: 42\nqa: {qaLocation: review}\n")

    assert (paths.story_dir, paths.gate_dir) == ("docs/stories", "review/gates")
    assert len(paths.problems) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("docs/stories", "docs/stories"),
        ("./docs/stories/", "docs/stories"),
        ("/docs//stories", "docs/stories"),
        ("docs\\stories", "docs/stories"),
        (" docs/./stories ", "docs/stories"),
    ],
)
def test_normalize_dir(value: str, expected: str) -> None:
    assert normalize_dir(value) == expected


@pytest.mark.parametrize("value", ["", ".", "./", "docs/../../etc"])
def test_normalize_dir_rejects_empty_and_escaping_folders(value: str) -> None:
    with pytest.raises(ValueError):
        normalize_dir(value)


def test_is_under_needs_a_whole_folder_prefix() -> None:
    assert is_under("docs/stories/1.1.x.md", "docs/stories/")
    assert not is_under("docs/stories-archive/1.1.x.md", "docs/stories")
    assert not is_under("docs/stories/1.1.x.md", "")


# .github/bmad-marketplace.yml ---------------------------------------------------------------------


def test_absent_or_empty_repo_config_is_all_defaults() -> None:
    assert parse_repo_config(None) == RepoConfig()
    assert parse_repo_config("") == RepoConfig()
    assert parse_repo_config("# nothing configured yet\n") == RepoConfig()
    defaults = RepoConfig()
    assert defaults.accepted_gates == frozenset({GateDecision.PASS, GateDecision.WAIVED})
    assert (defaults.story_dir, defaults.gate_dir, defaults.default_budget) == (None, None, None)


def test_full_repo_config() -> None:
    config = parse_repo_config(
        """
story_dir: ./work/stories/
gate_dir: work/qa/gates
branch_pattern: '^dev/(?P<epic>\\d+)-(?P<story>\\d+)$'
accepted_gates: [pass, Waived, CONCERNS]
default_budget: {min: 500, max: 1500.5, currency: usdc}
"""
    )

    assert config.problems == ()
    assert config.story_dir == "work/stories"
    assert config.gate_dir == "work/qa/gates"
    assert story_ids_in_branch(config.branch_pattern, "dev/2-7") == [(2, 7)]
    assert config.accepted_gates == frozenset({GateDecision.PASS, GateDecision.WAIVED, GateDecision.CONCERNS})
    assert config.default_budget == {"min": 500, "max": 1500.5, "currency": "USDC"}


def test_repo_config_can_tighten_accepted_gates_to_pass_only() -> None:
    config = parse_repo_config("accepted_gates: [PASS]\n")

    assert config.accepted_gates == frozenset({GateDecision.PASS})
    assert config.problems == ()


def test_accepted_gates_as_a_comma_separated_string() -> None:
    assert parse_repo_config("accepted_gates: PASS, CONCERNS\n").accepted_gates == frozenset(
        {GateDecision.PASS, GateDecision.CONCERNS}
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("[PASS, FAIL]", "FAIL can never be accepted"),
        ("[WAIVED]", "PASS must be accepted"),
        ("[PASS, APPROVED]", "'APPROVED' is not a gate decision"),
        ("[]", "empty"),
        ("{PASS: true}", "should be a list"),
    ],
)
def test_invalid_accepted_gates_fall_back_to_the_default(value: str, fragment: str) -> None:
    config = parse_repo_config(f"accepted_gates: {value}\n")

    assert config.accepted_gates == DEFAULT_ACCEPTED_GATES
    assert len(config.problems) == 1
    assert fragment in config.problems[0]


def test_unknown_keys_are_reported_and_known_ones_still_apply() -> None:
    config = parse_repo_config("storyDir: x\nstory_dir: stories\ngates: [PASS]\n")

    assert config.story_dir == "stories"
    assert len(config.problems) == 2
    assert "unknown key 'storyDir'" in config.problems[0]
    assert "unknown key 'gates'" in config.problems[1]


def test_every_invalid_value_is_listed() -> None:
    config = parse_repo_config(
        "story_dir: 7\ngate_dir: ../up\nbranch_pattern: '('\naccepted_gates: [FAIL]\ndefault_budget: 100\n"
    )

    assert config == RepoConfig(problems=config.problems)
    assert len(config.problems) == 5
    joined = "\n".join(config.problems)
    for key in ("story_dir", "gate_dir", "branch_pattern", "accepted_gates", "default_budget"):
        assert key in joined


@pytest.mark.parametrize("text", ["story_dir: [unclosed\n", "- story_dir\n", "just a string\n"])
def test_unusable_repo_config_file_means_defaults_and_one_problem(text: str) -> None:
    config = parse_repo_config(text)

    assert config == RepoConfig(problems=config.problems)
    assert len(config.problems) == 1
    assert ".github/bmad-marketplace.yml" in config.problems[0]


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("(", "not a valid regular expression"),
        ("story/\\d+\\.\\d+", "has no group"),
        ("(?P<epic>\\d+)\\.\\d+", "no group 'story'"),
        ("x" * 301, "longer than"),
    ],
)
def test_unusable_branch_patterns_are_reported(pattern: str, fragment: str) -> None:
    problem = check_branch_pattern(pattern)
    assert problem is not None and fragment in problem

    config = parse_repo_config(f"branch_pattern: '{pattern}'\n")
    assert config.branch_pattern == DEFAULT_BRANCH_PATTERN
    assert any(fragment in p for p in config.problems)


def test_branch_pattern_must_be_a_string() -> None:
    config = parse_repo_config("branch_pattern: 13\n")

    assert config.branch_pattern == DEFAULT_BRANCH_PATTERN
    assert "regular expression string" in config.problems[0]


@pytest.mark.parametrize(
    ("budget", "fragment"),
    [
        ("{min: 900, max: 100, currency: USD}", "more than max"),
        ("{min: -1, max: 100, currency: USD}", "at least 0"),
        ("{min: 1, max: 100}", "currency"),
        ("{min: true, max: 100, currency: USD}", "min should be a number"),
        ("{min: 1, max: '100', currency: USD}", "max should be a number"),
        ("{min: 1, max: 100, currency: USD, tip: 5}", "unknown key 'tip'"),
        ("{min: 1, max: .inf, currency: USD}", "max should be a number"),
    ],
)
def test_invalid_budget_means_no_default_budget(budget: str, fragment: str) -> None:
    config = parse_repo_config(f"default_budget: {budget}\n")

    assert config.default_budget is None
    assert len(config.problems) == 1
    assert fragment in config.problems[0]


def test_repo_config_stays_hashable_with_a_budget() -> None:
    config = parse_repo_config("default_budget: {min: 1, max: 2, currency: USD}\n")

    assert hash(config) == hash(config)


# Branch patterns ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("story/1.3-user-auth", [(1, 3)]),
        ("feature/1.3.user-auth", [(1, 3)]),
        ("1.3-user-auth", [(1, 3)]),
        ("story/2.10", [(2, 10)]),
        ("story-4.2_fix", [(4, 2)]),
        ("story/1.3-then-1.4", [(1, 3), (1, 4)]),
        ("story/1.3-redo-1.3", [(1, 3)]),
        ("release/v1.3.0", []),
        ("1.3.0", []),
        ("main", []),
        ("story/1.3A-auth", []),
    ],
)
def test_default_branch_pattern(branch: str, expected: list[tuple[int, int]]) -> None:
    assert story_ids_in_branch(DEFAULT_BRANCH_PATTERN, branch) == expected


def test_branch_pattern_with_one_group_around_the_id() -> None:
    assert check_branch_pattern(r"^s/(\d+\.\d+)") is None
    assert story_ids_in_branch(r"^s/(\d+\.\d+)", "s/3.4-x") == [(3, 4)]
    assert story_ids_in_branch(r"^s/(\w+)", "s/login") == []


def test_branch_pattern_with_two_unnamed_groups() -> None:
    assert check_branch_pattern(r"e(\d+)s(\d+)") is None
    assert story_ids_in_branch(r"e(\d+)s(\d+)", "feat/e2s5") == [(2, 5)]


# Core config and repo config together -------------------------------------------------------------


def test_repo_config_overrides_core_config_paths() -> None:
    core = parse_core_config(CORE_CONFIG)
    repo = parse_repo_config("gate_dir: qa/gates\nnope: 1\n")

    paths = effective_paths(core, repo)

    assert paths.story_dir == "planning/stories"
    assert paths.gate_dir == "qa/gates"
    assert paths.problems == repo.problems


def test_problems_of_both_files_are_kept() -> None:
    paths = effective_paths(parse_core_config("qa: [\n"), parse_repo_config("x: 1\n"))

    assert (paths.story_dir, paths.gate_dir) == ("docs/stories", "docs/qa/gates")
    assert len(paths.problems) == 2
