from __future__ import annotations

import pytest

from github_app.bmad.repo_config import parse_repo_config
from github_app.bmad.statuses import StoryFileStatus, map_status, parse_status_aliases

D, A, IP, R, DONE = (
    StoryFileStatus.DRAFT,
    StoryFileStatus.APPROVED,
    StoryFileStatus.IN_PROGRESS,
    StoryFileStatus.REVIEW,
    StoryFileStatus.DONE,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("✅ **FULLY COMPLETE**", DONE),
        ("🔄 READY FOR IMPLEMENTATION", A),
        ("Done ✅", DONE),
        ("✅ COMPLETED", DONE),
        ("**✅ Completed**", DONE),
        ("✅ **COMPLETED** - 2025-09-04", DONE),
        ("ready-for-dev", A),
        ("- [x] Ready for Review", R),
        ("Pronto para Desenvolvimento", A),
        ("Pronto para Revisão", R),
        ("Concluído", DONE),
        ("완료 (Completed)", DONE),
        ("진행 중", IP),
        ("Hoàn thành", DONE),
        ("En progreso", IP),
        ("Abgeschlossen", DONE),
        ("drafted", D),
        ("Status: Approved", A),
        ("상태: 승인됨", A),
    ],
)
def test_statuses_as_real_files_write_them(raw: str, expected: StoryFileStatus) -> None:
    assert map_status(raw) is expected


@pytest.mark.parametrize(
    "raw",
    ["**QA Approved** ✅", "Not Started", "Not Done", "Ready", "Deferred - Post-Epic 5", "- Story: pass", "", "✅"],
)
def test_values_that_do_not_name_one_status_are_not_guessed(raw: str) -> None:
    assert map_status(raw) is None


def test_a_value_and_its_translation_must_agree() -> None:
    assert map_status("Draft (Done)") is None
    assert map_status("Xyz (Done)") is DONE


def test_aliases_come_before_the_built_in_words() -> None:
    aliases = parse_status_aliases({"QA Approved": "Done", "Review pending": "in progress"}, [])

    assert map_status("**QA Approved** ✅", aliases) is DONE
    assert map_status("Review pending since Monday", aliases) is IP
    assert map_status("Review", aliases) is R


def test_status_aliases_in_the_repo_configuration() -> None:
    config = parse_repo_config(b'status_aliases:\n  "QA Approved": Done\n  Pronto: Approved\n')

    assert config.problems == ()
    assert config.status_aliases == {"qa approved": DONE, "pronto": A}


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (b"status_aliases: [Done]\n", "should map a written status"),
        (b'status_aliases:\n  "Shipped": Released\n', "'Released' is not one of Draft"),
        (b'status_aliases:\n  "": Done\n', "is not a status someone could write"),
    ],
)
def test_invalid_status_aliases_are_reported(yaml_text: bytes, problem: str) -> None:
    config = parse_repo_config(yaml_text)

    assert any(problem in p for p in config.problems), config.problems
    assert config.status_aliases == {}


def test_too_many_aliases_are_cut_and_reported() -> None:
    problems: list[str] = []
    aliases = parse_status_aliases({f"word {i}": "Done" for i in range(150)}, problems)

    assert len(aliases) == 100
    assert any("more than 100" in p for p in problems)
