from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from github_app.bmad.gate_file import (
    DEFAULT_MAX_BYTES,
    GateDecision,
    GateFileError,
    gate_id_from_path,
    is_gate_path,
    parse_gate_file,
)
from github_app.bmad.story_file import BmadFileError

TEMPLATE = b"""schema: 1
story: "2.6"
story_title: "Implement Tagging System Logic"
gate: PASS
status_reason: "All acceptance criteria met, tests green."
reviewer: "Quinn (Test Architect)"
updated: "2024-12-20T16:33:00Z"
waiver: { active: false }
top_issues: []
risk_summary:
  totals: { critical: 0, high: 0, medium: 0, low: 0 }
  recommendations: { must_fix: [], monitor: [] }
quality_score: 95
expires: "2025-01-14T00:00:00Z"
evidence: { tests_reviewed: 15, risks_identified: 0, trace: { ac_covered: [1, 2, 3, 4], ac_gaps: [] } }
nfr_validation: { security: { status: PASS, notes: "" } }
recommendations: { immediate: [], future: [{ action: "cache tags", refs: ["src/x.ts:84-95"] }] }
history: [{ at: "2024-12-19T10:00:00Z", gate: FAIL, note: "missing tests" }]
"""

PATH = "docs/qa/gates/2.6-tagging.yml"


def gate(text: str) -> bytes:
    return text.encode()


def test_template_gate_is_read_completely() -> None:
    doc = parse_gate_file(PATH, TEMPLATE)

    assert (doc.epic, doc.story) == (2, 6)
    assert doc.gate is GateDecision.PASS
    assert doc.waiver_active is False
    assert doc.waiver_reason is None
    assert doc.expires == datetime(2025, 1, 14, tzinfo=UTC)
    assert doc.reviewer == "Quinn (Test Architect)"
    assert doc.status_reason == "All acceptance criteria met, tests green."
    assert doc.quality_score == 95
    assert doc.path == PATH
    assert doc.problems == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PASS", GateDecision.PASS),
        ("pass", GateDecision.PASS),
        ('"Concerns"', GateDecision.CONCERNS),
        ("' fail '", GateDecision.FAIL),
        ("FAIL", GateDecision.FAIL),
    ],
)
def test_gate_value_is_case_insensitive_quoted_or_not(value: str, expected: GateDecision) -> None:
    doc = parse_gate_file(PATH, gate(f'story: "2.6"\ngate: {value}\n'))

    assert doc.gate is expected


@pytest.mark.parametrize("value", ["APPROVED", "PASSED", "yes", "1", "[PASS]"])
def test_unknown_gate_value_is_rejected_by_name(value: str) -> None:
    with pytest.raises(GateFileError) as caught:
        parse_gate_file(PATH, gate(f'story: "2.6"\ngate: {value}\n'))

    message = str(caught.value)
    assert "PASS, CONCERNS, FAIL, WAIVED" in message
    assert "is not one of" in message


def test_missing_gate_is_rejected() -> None:
    with pytest.raises(GateFileError, match="no gate field"):
        parse_gate_file(PATH, gate('story: "2.6"\n'))


def test_oversized_file_is_rejected_before_parsing() -> None:
    raw = b"gate: PASS\n" + b"#" * 70_000

    with pytest.raises(GateFileError) as caught:
        parse_gate_file(PATH, raw)

    assert str(caught.value) == f"gate file is {len(raw)} bytes, over the 65536-byte limit"


def test_file_exactly_at_the_limit_is_accepted() -> None:
    body = b'story: "2.6"\ngate: PASS\n'
    raw = body + b"#" * (DEFAULT_MAX_BYTES - len(body))

    assert len(raw) == DEFAULT_MAX_BYTES
    assert parse_gate_file(PATH, raw).gate is GateDecision.PASS


def test_custom_size_limit() -> None:
    with pytest.raises(GateFileError, match="over the 10-byte limit"):
        parse_gate_file(PATH, b"gate: PASS\n", max_bytes=10)


def test_yaml_syntax_error_reports_line_and_column() -> None:
    with pytest.raises(GateFileError) as caught:
        parse_gate_file(PATH, gate('story: "2.6"\ngate: PASS: really\n'))

    assert "line 2, column 11" in str(caught.value)
    assert "not valid YAML" in str(caught.value)


def test_unclosed_quote_is_a_yaml_error_not_a_crash() -> None:
    with pytest.raises(GateFileError, match="not valid YAML"):
        parse_gate_file(PATH, gate('story: "2.6\ngate: PASS\n'))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("- gate: PASS\n", "list"), ("PASS\n", "single string"), ("", "empty"), ("# only a comment\n", "empty")],
)
def test_a_gate_file_must_be_a_mapping(text: str, fragment: str) -> None:
    with pytest.raises(GateFileError, match=fragment):
        parse_gate_file(PATH, gate(text))


def test_non_utf8_bytes_are_rejected() -> None:
    with pytest.raises(GateFileError, match="UTF-8"):
        parse_gate_file(PATH, b"gate: PASS\nreviewer: \xff\xfe\n")


def test_byte_order_mark_is_tolerated() -> None:
    assert parse_gate_file(PATH, b'\xef\xbb\xbfstory: "2.6"\ngate: PASS\n').gate is GateDecision.PASS


def test_story_field_is_the_authority_over_the_file_name() -> None:
    doc = parse_gate_file("docs/qa/gates/2.6-tagging.yml", gate('story: "3.1"\ngate: PASS\n'))

    assert (doc.epic, doc.story) == (3, 1)
    assert any("2.6" in p and "3.1" in p for p in doc.problems)


@pytest.mark.parametrize(
    "path",
    ["docs/qa/gates/1.3-enhance-page-layout.yml", "docs/qa/gates/1.3.enhance-page-layout.yml", "x/1.3.yaml"],
)
def test_file_name_is_the_fallback_when_story_is_missing(path: str) -> None:
    doc = parse_gate_file(path, gate("gate: FAIL\n"))

    assert (doc.epic, doc.story) == (1, 3)


def test_gate_naming_no_story_anywhere_is_rejected() -> None:
    with pytest.raises(GateFileError, match="names no story"):
        parse_gate_file("docs/qa/gates/epic-metadata-removal-story-4.yml", gate("gate: PASS\n"))


def test_story_field_rescues_a_file_name_without_numbers() -> None:
    doc = parse_gate_file("docs/qa/gates/epic-metadata-removal-story-4.yml", gate('story: "4.2"\ngate: PASS\n'))

    assert (doc.epic, doc.story) == (4, 2)


def test_unquoted_story_number_is_read_through_the_file_name() -> None:
    # YAML reads `story: 1.10` as the float 1.1; the file name says which story it was.
    doc = parse_gate_file("docs/qa/gates/1.10-search.yml", gate("story: 1.10\ngate: PASS\n"))

    assert (doc.epic, doc.story) == (1, 10)


def test_unquoted_story_number_without_a_file_name_is_ambiguous() -> None:
    with pytest.raises(GateFileError) as caught:
        parse_gate_file("docs/qa/gates/search.yml", gate("story: 1.10\ngate: PASS\n"))

    assert "quote" in str(caught.value)
    assert "1.10" in str(caught.value)


def test_unquoted_story_number_contradicting_the_file_name_is_rejected() -> None:
    with pytest.raises(GateFileError, match=r"does not match the file name's story 1.3"):
        parse_gate_file("docs/qa/gates/1.3-search.yml", gate("story: 1.4\ngate: PASS\n"))


@pytest.mark.parametrize("value", ["3", "true", "[1, 3]", "{epic: 1}", '"one point three"', '"1-3"'])
def test_story_field_that_is_not_an_id_is_rejected(value: str) -> None:
    with pytest.raises(GateFileError, match="story"):
        parse_gate_file(PATH, gate(f"story: {value}\ngate: PASS\n"))


@pytest.mark.parametrize("value", ['"1.3A"', '"3.1b"', "1.3A"])
def test_letter_suffix_story_cannot_be_recorded(value: str) -> None:
    with pytest.raises(GateFileError) as caught:
        parse_gate_file(PATH, gate(f"story: {value}\ngate: PASS\n"))

    assert value.strip('"') in str(caught.value)
    assert "integers" in str(caught.value)


def test_letter_suffix_file_name_is_rejected_when_it_is_the_only_source() -> None:
    with pytest.raises(GateFileError, match="1.3A"):
        parse_gate_file("docs/qa/gates/1.3A-login.yml", gate("gate: PASS\n"))


def test_letter_suffix_file_name_does_not_block_a_valid_story_field() -> None:
    doc = parse_gate_file("docs/qa/gates/1.3A-login.yml", gate('story: "1.4"\ngate: PASS\n'))

    assert (doc.epic, doc.story) == (1, 4)


def test_story_field_may_carry_the_word_story() -> None:
    assert parse_gate_file(PATH, gate('story: "Story 2.6"\ngate: PASS\n')).story == 6


def test_waived_gate_with_active_waiver_and_reason() -> None:
    text = 'story: "2.6"\ngate: WAIVED\nwaiver: { active: true, reason: "Accepted for MVP", approved_by: "PO" }\n'

    doc = parse_gate_file(PATH, gate(text))

    assert doc.gate is GateDecision.WAIVED
    assert doc.waiver_active is True
    assert doc.waiver_reason == "Accepted for MVP"


@pytest.mark.parametrize(
    ("waiver", "fragment"),
    [
        ("", "waiver.active is None"),
        ("waiver: { active: false, reason: x }", "not true"),
        ('waiver: { active: "true", reason: x }', "not true"),
        ("waiver: { active: true }", "no reason"),
        ('waiver: { active: true, reason: "  " }', "no reason"),
        ("waiver: yes", "waiver is True"),
    ],
)
def test_waived_gate_needs_an_active_waiver_with_a_reason(waiver: str, fragment: str) -> None:
    with pytest.raises(GateFileError, match="WAIVED") as caught:
        parse_gate_file(PATH, gate(f'story: "2.6"\ngate: waived\n{waiver}\n'))

    assert fragment in str(caught.value)


def test_malformed_waiver_on_a_pass_gate_is_only_a_problem() -> None:
    doc = parse_gate_file(PATH, gate('story: "2.6"\ngate: PASS\nwaiver: nope\n'))

    assert doc.gate is GateDecision.PASS
    assert doc.waiver_active is False
    assert any("waiver" in p for p in doc.problems)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"2025-01-14T00:00:00Z"', datetime(2025, 1, 14, tzinfo=UTC)),
        ("2025-01-14T00:00:00Z", datetime(2025, 1, 14, tzinfo=UTC)),
        ('"2025-01-14T02:00:00+02:00"', datetime(2025, 1, 14, tzinfo=UTC)),
        ('"2025-01-14T00:00:00"', datetime(2025, 1, 14, tzinfo=UTC)),
        ("2025-01-14", datetime(2025, 1, 14, tzinfo=UTC)),
        ('"2025-01-14"', datetime(2025, 1, 14, tzinfo=UTC)),
        ("null", None),
    ],
)
def test_expires_in_its_iso_8601_forms(value: str, expected: datetime | None) -> None:
    doc = parse_gate_file(PATH, gate(f'story: "2.6"\ngate: PASS\nexpires: {value}\n'))

    assert doc.expires == expected
    if doc.expires is not None:
        assert doc.expires.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ['"next week"', "42", '""', "[2025]"])
def test_unreadable_expiry_is_rejected_rather_than_ignored(value: str) -> None:
    with pytest.raises(GateFileError, match="ISO 8601"):
        parse_gate_file(PATH, gate(f'story: "2.6"\ngate: PASS\nexpires: {value}\n'))


def test_is_expired() -> None:
    doc = parse_gate_file(PATH, TEMPLATE)

    assert not doc.is_expired(datetime(2025, 1, 13, 23, 59, tzinfo=UTC))
    assert doc.is_expired(datetime(2025, 1, 14, tzinfo=UTC))
    # Clock readings in other zones are compared as instants: 02:30+02:00 is 00:30 UTC.
    assert doc.is_expired(datetime(2025, 1, 14, 2, 30, tzinfo=timezone(timedelta(hours=2))))
    assert not doc.is_expired(datetime(2025, 1, 14, 1, 30, tzinfo=timezone(timedelta(hours=2))))
    # A naive clock reading is taken as UTC.
    assert doc.is_expired(datetime(2025, 2, 1))


def test_gate_without_expiry_never_expires() -> None:
    doc = parse_gate_file(PATH, gate('story: "2.6"\ngate: PASS\n'))

    assert not doc.is_expired(datetime(2999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("value", ["101", "-1", "high", "true", ".nan"])
def test_out_of_range_quality_score_is_dropped_and_reported(value: str) -> None:
    doc = parse_gate_file(PATH, gate(f'story: "2.6"\ngate: PASS\nquality_score: {value}\n'))

    assert doc.quality_score is None
    assert any("quality_score" in p for p in doc.problems)


def test_optional_text_fields_absent_or_odd() -> None:
    doc = parse_gate_file(PATH, gate('story: "2.6"\ngate: PASS\nreviewer: [a, b]\nstatus_reason: "  "\n'))

    assert doc.reviewer is None
    assert doc.status_reason is None
    assert doc.quality_score is None
    assert any("reviewer" in p for p in doc.problems)


def test_gate_file_errors_are_bmad_file_errors() -> None:
    with pytest.raises(BmadFileError):
        parse_gate_file(PATH, b"gate: NOPE\n")


def test_yaml_tags_that_build_objects_are_refused() -> None:
    with pytest.raises(GateFileError):
        parse_gate_file(PATH, b'!!python/object/apply:os.system ["echo hi"]\n')


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("docs/qa/gates/1.3-login.yml", True),
        ("docs/qa/gates/1.3-login.yaml", True),
        ("docs/qa/gates/sub/1.3-login.yml", False),
        ("docs/qa/gates/archive/1.3-login/1.3-login-2025-10-02.yml", False),
        ("docs/qa/1.3-login.yml", False),
        ("docs/qa/gates/1.3-login.md", True),
        ("docs/qa/gates/README.md", False),
        ("docs/qa/gates/.keep.yml", False),
    ],
)
def test_is_gate_path(path: str, expected: bool) -> None:
    assert is_gate_path(path, "docs/qa/gates") is expected


def test_gate_id_from_path() -> None:
    assert gate_id_from_path("docs/qa/gates/2.1.define-x-define-x.yml") == (2, 1)
    assert gate_id_from_path("docs/qa/gates/epic-metadata-removal-story-4.yml") is None
    with pytest.raises(GateFileError):
        gate_id_from_path("docs/qa/gates/3.1b-search.yml")


def test_markdown_gate_must_name_its_story_in_the_story_field() -> None:
    with pytest.raises(GateFileError, match="names no story"):
        parse_gate_file("docs/qa/gates/1.3-login.md", b"# Gate\n\n```yaml\ngate: PASS\n```\n")
    doc = parse_gate_file("docs/qa/gates/1.3-login.md", b'# Gate\n\n```yaml\nstory: "1.3"\ngate: PASS\n```\n')
    assert (doc.epic, doc.story, doc.gate) == (1, 3, GateDecision.PASS)


def test_numeric_story_confirmed_by_an_id_anywhere_in_an_irregular_name() -> None:
    doc = parse_gate_file("docs/qa/gates/14.story-14.3-dedup.yml", b"story: 14.3\ngate: CONCERNS\n")
    assert (doc.epic, doc.story) == (14, 3)
    with pytest.raises(GateFileError, match="ambiguous"):
        parse_gate_file("docs/qa/gates/dedup.yml", b"story: 14.3\ngate: CONCERNS\n")


def test_a_decision_under_another_key_is_named_in_the_refusal() -> None:
    with pytest.raises(GateFileError, match="it has status: PASS"):
        parse_gate_file(PATH, b'story: "1.3"\nstatus: PASS\n')
