"""Limits on untrusted values: numbers the database can hold, text it accepts, short quotations."""

from __future__ import annotations

import pytest
import yaml

from github_app.bmad import safe_yaml
from github_app.bounded import MAX_STORY_NUMBER, bounded_repr, clean_text, clip, storable_number


@pytest.mark.parametrize(
    ("digits", "value"),
    [("0", 0), ("3", 3), ("007", 7), (str(MAX_STORY_NUMBER), MAX_STORY_NUMBER), (str(MAX_STORY_NUMBER + 1), None)],
)
def test_storable_numbers(digits: str, value: int | None) -> None:
    assert storable_number(digits) == value


@pytest.mark.parametrize("digits", ["", "9" * 5_000, "1.3", "-1", "²", " 1"])
def test_not_storable_numbers(digits: str) -> None:
    assert storable_number(digits) is None


def test_a_shared_structure_is_quoted_in_a_few_characters() -> None:
    level: list[object] = ["lol"] * 9
    for _ in range(12):  # 9^13 items if walked
        level = [level] * 9
    text = bounded_repr({"gate": level})
    assert len(text) < 120 and text.startswith("{'gate': [[")


def test_long_values_are_cut_and_say_how_long_they_were() -> None:
    assert clip("x" * 1_000, 10) == "xxxxxxxxxx… (1000 characters)"
    assert "5000 characters" not in bounded_repr("y" * 5_000) and len(bounded_repr("y" * 5_000)) < 120
    assert bounded_repr(10**5_000) == "<int too long to show>"


def test_text_for_the_database_loses_control_characters_but_not_layout() -> None:
    assert clean_text("a\x00b\x07c\td\ne\r\nf\x7f") == "abc\td\ne\r\nf"
    # C1 controls too (a terminal's CSI, NEL), but not the letters right above them.
    assert clean_text("x\x80y\x85z\x9b[31m\x9f\xa0é") == "xyz[31m\xa0é"


def test_text_for_the_database_is_valid_unicode() -> None:
    # What YAML makes of "\uD83D\uDE00 ok \uD800": a surrogate pair and a lone half.
    assert clean_text("\ud83d\ude00 ok \ud800") == "\U0001f600 ok "
    assert clean_text("\udc00\ud83d") == ""
    assert clean_text("\U0001f600").encode() == "\U0001f600".encode()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &x 1\nb: *x\n", "aliases (*x) are not allowed"),
        ("<<: *base\n", "aliases (*base) are not allowed"),
        ("a: " + "[" * 30 + "]" * 30, "nested more than 20 levels deep"),
        ("a: " + "1" * 41, "a number of 41 characters is too long"),
        ("a: 2025-02-30", "day is out of range for month"),
        ("- 1\n" * 5_001, "more than 5000 values"),
    ],
)
def test_the_yaml_reader_refuses_what_no_bmad_file_needs(text: str, problem: str) -> None:
    with pytest.raises(yaml.YAMLError) as refused:
        safe_yaml.load(text)
    assert problem in str(refused.value)


def test_the_yaml_reader_reads_ordinary_documents() -> None:
    assert safe_yaml.load("a: &anchor 1\nb: [x, {c: 2025-01-14}]\n") == {
        "a": 1,
        "b": ["x", {"c": yaml.safe_load("2025-01-14")}],
    }
