"""The command grammar: which lines of a comment are commands, and their words. Hypothesis feeds it
random and hostile text: it never crashes, never finds a command on a line that does not start one, never
in code or quotes. The hostile comments are listed with what is read from them; their CPU time is
measured by bench/hostile_input.py beside the repository file parsers', not asserted here."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from github_app.domain.command_grammar import (
    MAX_COMMANDS,
    MAX_COMMENT_CHARS,
    UsageError,
    parse_comment,
    split_words,
    story_ref,
    user_ref,
)

SLUG = "bmad-marketplace"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PIECES = [
    "/bmad", "/BMAD", "@bmad-marketplace", " ", "   ", "    ", "\t", "\n", "\r\n", "```", "~~~", "````", ">",
    "`", "<!--", "-->", '"', "'", "\\", "validate", "1.3", "score=8", "@dana", "=", "\x00", "\u2028", "é",
]  # fmt: skip
hostile = st.lists(st.sampled_from(PIECES), max_size=300).map("".join)
any_text = st.one_of(st.text(max_size=2000), hostile)


def _starts_command(line: str) -> bool:
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return False
    lowered = stripped.lower()
    for prefix in ("/bmad", f"@{SLUG}"):
        if lowered.startswith(prefix):
            rest = stripped[len(prefix) :]
            return not rest or rest[0] in " \t"
    return False


@FUZZ
@given(any_text)
def test_never_crashes_and_only_lines_that_start_a_command_are_commands(body: str) -> None:
    parsed = parse_comment(body, SLUG)
    lines = body.split("\n")
    assert len(parsed.commands) <= MAX_COMMANDS
    for command in parsed.commands:
        assert _starts_command(lines[command.line - 1].rstrip("\r")), (body, command)


def _without_closers(line: str) -> str:
    line = line.replace("`", "").replace("~", "")
    while "-->" in line:  # removing one can join its neighbours into another ("---->>")
        line = line.replace("-->", "")
    return line


@FUZZ
@given(st.lists(any_text, max_size=5).map("\n".join))
def test_nothing_in_code_quotes_or_hidden_html_is_ever_a_command(inner: str) -> None:
    # What can close the wrapper is removed from the inside, as a person quoting text would leave it.
    lines = [_without_closers(line) for line in inner.splitlines()]
    command = "/bmad validate 1.3 score=9"
    wrapped = [
        "\n".join(["```", *lines, command, "```"]),
        "\n".join(["~~~~ text", *lines, command, "~~~~"]),
        "\n".join(f"> {line}" for line in [*lines, command]),
        "\n".join(f"    {line}" for line in [*lines, command]),
        "\n".join(f"\t{line}" for line in [*lines, command]),
        "\n".join(["<!--", *lines, command, "-->"]),
        f"`{command}`",
    ]
    for body in wrapped:
        assert parse_comment(body, SLUG).commands == (), body


@FUZZ
@given(
    st.sampled_from(["help", "status", "validate", "assign", "Validate"]),
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=["Zs", "Cc", "Zl", "Zp"], blacklist_characters="\"'"),
            min_size=1,
            max_size=20,
        ),
        max_size=5,
    ),
)
def test_words_are_read_back_as_written(name: str, words: list[str]) -> None:
    parsed = parse_comment(" ".join(["/bmad", name, *words]), SLUG)
    [command] = parsed.commands
    assert (command.name, command.args, command.error) == (name.lower(), tuple(words), None)


def test_quotes_keep_spaces_and_a_backslash_escapes_a_quote() -> None:
    assert split_words('block 1.3 "waiting for \\"keys\\"" it\'s') == ["block", "1.3", 'waiting for "keys"', "it's"]
    assert split_words("block 1.3 'two words'") == ["block", "1.3", "two words"]
    with pytest.raises(UsageError, match="quote is not closed"):
        split_words('block 1.3 "open')


def test_several_commands_in_one_comment_and_the_rest_counted() -> None:
    body = "\n".join(["Hi", "/bmad status", "text", "@BMAD-Marketplace help", *["/bmad help"] * 12])
    parsed = parse_comment(body, SLUG)
    assert [c.name for c in parsed.commands[:2]] == ["status", "help"]
    assert len(parsed.commands) == MAX_COMMANDS and parsed.dropped == 4


def test_argument_types() -> None:
    assert story_ref("1.3") == (1, 3)
    assert user_ref("@dana-dev") == "dana-dev"
    for bad in ("1.3.1", "1.", "x.3", "99999999999.1", ""):
        with pytest.raises(UsageError):
            story_ref(bad)
    for bad in ("dana", "@", "@-dana", "@" + "a" * 40, "@da na"):
        with pytest.raises(UsageError):
            user_ref(bad)


TOO_LONG = ("", "the command line is over 1000 characters")
# Comments built to be slow to read: each with the commands read from it, as (name, error), and how many
# more were dropped.
HOSTILE_COMMENTS: dict[str, tuple[str, list[tuple[str, str | None]], int]] = {
    "an unclosed run of quotes": ("/bmad " + '"' * 60_000, [TOO_LONG], 0),
    "escaped quotes": ("/bmad " + '\\"' * 30_000, [TOO_LONG], 0),
    "fences": ("```\n" * 30_000, [], 0),
    "a command a line": ("/bmad x\n" * 20_000, [("x", None)] * MAX_COMMANDS, MAX_COMMENT_CHARS // 8 - MAX_COMMANDS),
    "unclosed HTML comments": ("<!--\n" * 30_000, [], 0),
    "nested quote marks": ("> " * 30_000, [], 0),
    "many words": ("/bmad " + "a " * 30_000, [TOO_LONG], 0),
    "spaces after the command": ("/bmad" + " " * 65_000, [TOO_LONG], 0),
    "mentions without a space": ("@bmad-marketplace" * 4_000, [], 0),
}


@pytest.mark.parametrize(("body", "commands", "dropped"), HOSTILE_COMMENTS.values(), ids=HOSTILE_COMMENTS.keys())
def test_hostile_comments_are_read_as_what_they_are(
    body: str, commands: list[tuple[str, str | None]], dropped: int
) -> None:
    parsed = parse_comment(body, SLUG)
    assert [(c.name, c.error) for c in parsed.commands] == commands
    assert parsed.dropped == dropped
