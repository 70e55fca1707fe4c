"""Random and adversarial repository files and PR texts through the parsers and the linker.

Every call must return or refuse the input with the parser's own error, never raise anything else.
Valid documents with random content are generated too, so that what the parsers keep (numbers, titles,
reasons) is checked, not only that they survive. The hostile cases that used to take minutes are listed
explicitly; their CPU time is measured by bench/hostile_input.py, not asserted here.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from github_app.bmad.core_config import parse_core_config
from github_app.bmad.gate_file import gate_id_from_path, parse_gate_file
from github_app.bmad.repo_config import check_branch_pattern, parse_repo_config, story_ids_in_branch
from github_app.bmad.story_file import BmadFileError, NotAStory, parse_story_file, story_id_from_path
from github_app.bounded import MAX_STORY_NUMBER
from github_app.domain.linking import Linked, LinkLevel, link_pull_request
from github_app.logs import SecretScrubber

T = TypeVar("T")
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# Pieces that matter to the patterns and to YAML, repeated into long runs.
TOKENS = [
    " ", "\t", "\n", "#", "*", "_", ":", "：", ".", "-", "/", "|", "(", ")", "（", "）", "[", "]", "{", "}",
    "<!--", "-->", "story", "Story ", "# Story ", "## ", "## Status", "Status:", "1", "3", "9", "1.3", "3.",
    "&a ", "*a", "- ", "? ", "!!", '"', "'", "\x00", "\x07", "\ufeff", "```", "a", "é", "用户故事",
]  # fmt: skip
runs = st.lists(st.tuples(st.sampled_from(TOKENS), st.integers(1, 2000)), max_size=6).map(
    lambda parts: "".join(token * count for token, count in parts)
)
mixed = st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=60).map("".join)
texts = runs | mixed | st.text(max_size=200)
names = st.lists(st.sampled_from(["1", "3", "9" * 12, ".", "-", "_", "A", "md", "yml", "story", "x"]), max_size=12).map(
    "".join
)


def bounded(call: Callable[[], T]) -> T | None:
    """The call's result, None when it refused its input with the parser's own error; anything else
    it raises fails the test."""
    try:
        return call()
    except (BmadFileError, NotAStory):
        return None


def assert_storable(epic: int, story: int) -> None:
    assert 0 <= epic <= MAX_STORY_NUMBER and 0 <= story <= MAX_STORY_NUMBER


@FUZZ
@given(name=names, text=texts)
def test_story_files(name: str, text: str) -> None:
    doc = bounded(lambda: parse_story_file(f"docs/stories/{name}.md", text))
    if doc is not None:
        assert_storable(doc.epic, doc.story)
        assert "\x00" not in doc.title + doc.description + doc.acceptance_criteria
    ident = bounded(lambda: story_id_from_path(f"docs/stories/{name}.md"))
    if ident is not None:
        assert_storable(*ident)


@FUZZ
@given(name=names, text=texts)
def test_gate_files(name: str, text: str) -> None:
    doc = bounded(lambda: parse_gate_file(f"docs/qa/gates/{name}.yml", text.encode()))
    if doc is not None:
        assert_storable(doc.epic, doc.story)
        assert "\x00" not in (doc.reviewer or "") + (doc.status_reason or "") + (doc.waiver_reason or "")
    bounded(lambda: gate_id_from_path(f"docs/qa/gates/{name}.yml"))


numbers = st.integers(0, MAX_STORY_NUMBER)
# One line of text as people write it, control characters and NULs included (they must be dropped).
line = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=80,
).map(lambda t: "r" + t)
# Words that every parser keeps exactly as written: a field made of them is compared with what was
# generated. Half the fields are plain, so the comparisons run on about half the examples, not by luck.
PLAIN = re.compile(r"[A-Za-z0-9]+(?: {1,3}[A-Za-z0-9]+){0,6}")
plain = st.from_regex(PLAIN, fullmatch=True)
field = line | plain
STATUSES = ["Draft", "Approved", "InProgress", "In Progress", "Review", "Done", "Ready for Review"]


def is_plain(text: str) -> bool:
    return PLAIN.fullmatch(text) is not None


def assert_clean(kept: str, written: str) -> None:
    """Control characters (C0 but tab and newline, DEL, C1) are dropped, the text is valid Unicode (no
    surrogate, which a UTF-8 database refuses) and nothing is made up."""
    assert not any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n" for c in kept), repr(kept)
    assert set(kept) <= set(written) | set(" \n"), (kept, written)


@FUZZ
@given(epic=numbers, story=numbers, title=field, status=st.sampled_from(STATUSES), want=field, criteria=field)
def test_valid_story_files_keep_their_content(
    epic: int, story: int, title: str, status: str, want: str, criteria: str
) -> None:
    text = (
        f"# Story {epic}.{story}: {title}\n\n## Status\n{status}\n\n## Story\n**As a** user,\n**I want** {want},\n"
        f"**so that** it works.\n\n## Acceptance Criteria\n1. {criteria}\n"
    )
    doc = parse_story_file(f"docs/stories/{epic}.{story}.generated.md", text)
    assert (doc.epic, doc.story) == (epic, story)
    assert doc.status_raw == status
    assert_clean(doc.title, title)
    assert_clean(doc.description, text)
    assert_clean(doc.acceptance_criteria, text)
    if is_plain(title):
        assert doc.title == title
    if is_plain(want):
        assert f"**I want** {want},\n" in doc.description
    if is_plain(criteria):
        assert doc.acceptance_criteria == f"1. {criteria}"


GATES = ["PASS", "FAIL", "CONCERNS", "WAIVED"]


@FUZZ
@given(epic=numbers, story=numbers, gate=st.sampled_from(GATES), reviewer=field, reason=field)
def test_valid_gate_files_keep_their_content(epic: int, story: int, gate: str, reviewer: str, reason: str) -> None:
    # JSON strings are YAML double-quoted scalars: any text, quoted the way a careful writer would.
    raw = (
        f'schema: 1\nstory: "{epic}.{story}"\ngate: {gate}\nreviewer: {json.dumps(reviewer)}\n'
        f"status_reason: {json.dumps(reason)}\n"
    )
    if gate == "WAIVED":  # a waived gate says why, and that the waiver is active
        raw += f"waiver:\n  active: true\n  reason: {json.dumps(reason)}\n"
    doc = parse_gate_file(f"docs/qa/gates/{epic}.{story}-generated.yml", raw.encode())
    assert (doc.epic, doc.story, doc.gate.value) == (epic, story, gate)
    assert doc.reviewer is not None and doc.status_reason is not None
    assert (doc.waiver_reason is not None) == (gate == "WAIVED")
    for kept, written in ((doc.reviewer, reviewer), (doc.status_reason, reason), (doc.waiver_reason, reason)):
        if kept is None:
            continue
        assert_clean(kept, written)
        if is_plain(written):
            assert kept == written


@FUZZ
@given(text=texts)
def test_configuration_files(text: str) -> None:
    config = bounded(lambda: parse_repo_config(text.encode()))
    assert config is not None and all(len(problem) < 1_000 for problem in config.problems)
    paths = bounded(lambda: parse_core_config(text.encode()))
    assert paths is not None and all(len(problem) < 1_000 for problem in paths.problems)


story_ids = st.tuples(numbers, numbers)
changed = st.lists(story_ids.map(lambda i: f"docs/stories/{i[0]}.{i[1]}.generated.md"), max_size=3)
# What could name a story or hide one: "story" in any case (re.IGNORECASE's too, e.g. "ſtory") and an
# HTML comment's opening.
MENTION_OR_COMMENT = re.compile(r"story|<!--", re.IGNORECASE)


def naming_nothing(text: str) -> str:
    return MENTION_OR_COMMENT.sub("tale", text[:200])


@FUZZ
@given(
    title=texts,
    body=texts,
    branch=texts,
    pattern=st.none() | mixed,
    files=changed,
    named=st.none() | story_ids,
    named_in=st.sampled_from([LinkLevel.TITLE, LinkLevel.BODY]),
    decoy=story_ids,
)
def test_pull_request_texts(
    title: str,
    body: str,
    branch: str,
    pattern: str | None,
    files: list[str],
    named: tuple[int, int] | None,
    named_in: LinkLevel,
    decoy: tuple[int, int],
) -> None:
    usable = pattern is not None and bounded(lambda: check_branch_pattern(pattern)) is None
    if named is not None:  # the author names one story, after whatever else they wrote
        title, body = naming_nothing(title), naming_nothing(body)
        mention = f"\nStory {named[0]}.{named[1]}: the work"
        if named_in is LinkLevel.TITLE:  # the description names another story: the title wins
            title += mention
            body += f"\nStory {decoy[0]}.{decoy[1]}: also touched"
        else:
            body += mention
    result = bounded(
        lambda: link_pull_request(
            title=title,
            body=body,
            head_branch=branch,
            changed_files=files,
            story_dir="docs/stories",
            **({"branch_pattern": pattern} if usable and pattern is not None else {}),
        )
    )
    if named is not None:
        # The named story, whatever the branch and the changed files name: they come after the texts.
        assert result == Linked(named[0], named[1], named_in)
    if isinstance(result, Linked):
        assert_storable(result.epic, result.story)
        if result.level is LinkLevel.CHANGED_FILES:
            assert f"docs/stories/{result.epic}.{result.story}.generated.md" in files
    if usable and pattern is not None:
        bounded(lambda: story_ids_in_branch(pattern, branch))


def alias_bomb(key: str, levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    lines.append(f"{key}: [" + ",".join([f"*a{levels - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


SPACES = " " * 65_000
HOSTILE_STORIES = {
    "spaces after the heading marks": "#" + SPACES + "x\n",
    "spaces inside a section heading": "## a" + SPACES + "b\n",
    "unclosed brackets in a heading": "## " + "(" * 200_000 + "\n",
    "spaces after the story prefix": "# Story" + SPACES + "x\n",
    "a story number of 5,000 digits": "# Story 3." + "9" * 5_000 + ": Huge\n",
    "a status line of spaces": "Status" + SPACES + "\n",
    "many headings": "## x\n" * 100_000,
}
HOSTILE_GATES = {
    "nested aliases": alias_bomb("gate"),
    "a story number of 5,000 digits": b'gate: PASS\nstory: "3.' + b"9" * 5_000 + b'"\n',
    "an integer of 5,000 digits": b"gate: PASS\nstory: " + b"9" * 5_000 + b"\n",
    "deep nesting": b"gate: " + b"[" * 60_000,
    "many values": b"- 1\n" * 15_000,
    "a day that does not exist": b'gate: PASS\nstory: "1.3"\nexpires: 2025-02-30\n',
    "a moment past year 9999 in UTC": b'gate: PASS\nstory: "1.3"\nexpires: 9999-12-31T23:00:00-05:00\n',
}
HOSTILE_PR_TEXTS = {
    "story and spaces": ("story" + SPACES, ""),
    "story, hash and spaces": (("story #" + " " * 200) * 300, ""),
    "story and emphasis": ("story" + " *_" * 20_000, ""),
    "a story number of 5,000 digits": ("Story 3." + "9" * 5_000, ""),
    "unclosed comments": ("<!--" * 16_000, ""),
    "a long branch of digits": ("", "-1." + "1" * 50_000 + "a"),
}


@pytest.mark.parametrize("text", HOSTILE_STORIES.values(), ids=HOSTILE_STORIES.keys())
def test_hostile_story_files(text: str) -> None:
    bounded(lambda: parse_story_file("docs/stories/1.3.x.md", text))
    bounded(lambda: parse_story_file("docs/stories/x.md", text))


@pytest.mark.parametrize("raw", HOSTILE_GATES.values(), ids=HOSTILE_GATES.keys())
def test_hostile_gate_and_configuration_files(raw: bytes) -> None:
    assert bounded(lambda: parse_gate_file("docs/qa/gates/1.3-x.yml", raw)) is None  # refused
    config = bounded(lambda: parse_repo_config(raw.replace(b"gate", b"story_dir")))
    assert config is not None and all(len(problem) < 1_000 for problem in config.problems)
    paths = bounded(lambda: parse_core_config(raw.replace(b"gate", b"devStoryLocation")))
    assert paths is not None and all(len(problem) < 1_000 for problem in paths.problems)


@pytest.mark.parametrize(("body", "branch"), HOSTILE_PR_TEXTS.values(), ids=HOSTILE_PR_TEXTS.keys())
def test_hostile_pull_request_texts(body: str, branch: str) -> None:
    for title in (body[:300], body):
        result = bounded(
            lambda t=title: link_pull_request(  # type: ignore[misc]
                title=t, body=body, head_branch=branch, changed_files=[], story_dir="docs/stories"
            )
        )
        assert not isinstance(result, Linked)


def test_a_catastrophic_configured_branch_pattern() -> None:
    pattern = r"^(?P<epic>(\d+)+)\.(?P<story>\d+)$"
    assert check_branch_pattern(pattern) is None
    assert bounded(lambda: story_ids_in_branch(pattern, "1" * 5_000 + "!")) == []
    assert story_ids_in_branch(pattern, "12.34") == [(12, 34)]


@FUZZ
@given(text=texts)
def test_log_lines_quoting_user_text(text: str) -> None:
    scrubber = SecretScrubber()
    bounded(lambda: scrubber.scrub(text))
    bounded(lambda: scrubber.scrub("eyJ" * 30_000 + text))
