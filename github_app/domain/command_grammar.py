"""Bot commands in a comment: which lines are commands, and their words. No I/O.

A line is a command when, after at most three spaces, it starts with `/bmad` (or `@<app-slug>`) followed
by a space or the end of the line. What Markdown shows as code or quotation is never a command, so that
quoting or documenting a command does not run it: lines inside fenced code blocks (``` or ~~~), lines
indented four spaces or a tab (indented code, or a list item's continuation), lines starting with `>`,
with a backtick (inline code) or inside an HTML comment (which GitHub does not show at all).

Words are separated by spaces; "double" or 'single' quotes keep spaces in one word (a backslash escapes a
quote inside double quotes). Everything here reads each character a bounded number of times: a hostile
comment costs time linear in its length, and a comment is read only up to `MAX_COMMENT_CHARS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "/bmad"
MAX_COMMENT_CHARS = 65_536  # GitHub's own limit on a comment's body
MAX_LINE_CHARS = 1_000
MAX_COMMANDS = 10  # per comment; the rest are answered with one line
MAX_WORDS = 40
STORY_ID_MAX = 2_147_483_647  # Story.epicNumber and storyNumber are PostgreSQL INTEGERs

_LOGIN = re.compile(r"@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))")
_STORY = re.compile(r"(\d{1,20})\.(\d{1,20})")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class UsageError(ValueError):
    """A command's words do not fit its usage; the message says which."""


@dataclass(frozen=True)
class CommandLine:
    """One command of a comment: its 1-based line number, its name (lower case, "" for a bare
    `/bmad`), its words, the line as written (bounded), and why its words could not be read."""

    line: int
    name: str
    args: tuple[str, ...]
    text: str
    error: str | None = None

    @property
    def key(self) -> str:
        """What identifies the command across edits of its comment."""
        return " ".join((self.name, *self.args)) if self.error is None else self.text


@dataclass(frozen=True)
class ParsedComment:
    commands: tuple[CommandLine, ...]
    dropped: int = 0  # commands past MAX_COMMANDS

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.commands) + ((f"+{self.dropped}",) if self.dropped else ())


def parse_comment(body: str, app_slug: str | None = None) -> ParsedComment:
    """The commands of a comment's body, in order."""
    if not isinstance(body, str):
        return ParsedComment(())
    text = body[:MAX_COMMENT_CHARS]
    mention = f"@{app_slug.lower()}" if app_slug else None
    commands: list[CommandLine] = []
    dropped = 0
    fence: str | None = None
    in_html_comment = False
    # Lines as Markdown has them: split at line feeds only (Python's splitlines also splits at form
    # feeds and Unicode separators, which GitHub shows in the middle of a line).
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if fence is not None:
            match = _FENCE.match(line)
            if (
                match
                and match.group(1)[0] == fence[0]
                and len(match.group(1)) >= len(fence)
                and not line[match.end() :].strip()
            ):
                fence = None
            continue
        if in_html_comment:
            if "-->" in line:
                in_html_comment = False
            continue
        match = _FENCE.match(line)
        if match:
            fence = match.group(1)
            continue
        stripped = line.lstrip(" ")
        if len(line) - len(stripped) > 3 or stripped.startswith("\t"):
            continue  # indented code
        if stripped.startswith("<!--"):
            in_html_comment = "-->" not in stripped[4:]
            continue
        rest = _after_prefix(stripped, mention)
        if rest is None:
            continue
        if len(commands) >= MAX_COMMANDS:
            dropped += 1
            continue
        commands.append(_command(number, stripped, rest))
    return ParsedComment(tuple(commands), dropped)


def _after_prefix(line: str, mention: str | None) -> str | None:
    """The text after the command prefix, or None when the line does not start a command."""
    lowered = line[: max(len(PREFIX), len(mention or "")) + 1].lower()
    for prefix in (PREFIX, mention):
        if prefix and lowered.startswith(prefix):
            after = line[len(prefix) :]
            if not after or after[0] in " \t":
                return after
    return None


def _command(number: int, line: str, rest: str) -> CommandLine:
    shown = line if len(line) <= 120 else line[:117] + "..."
    if len(line) > MAX_LINE_CHARS:
        return CommandLine(number, "", (), shown, f"the command line is over {MAX_LINE_CHARS} characters")
    try:
        words = split_words(rest)
    except UsageError as exc:
        return CommandLine(number, words_head(rest), (), shown, str(exc))
    if not words:
        return CommandLine(number, "", (), shown)
    return CommandLine(number, words[0].lower(), tuple(words[1:]), shown)


def words_head(rest: str) -> str:
    parts = rest.split(None, 1)
    return parts[0].lower() if parts else ""


def split_words(text: str) -> list[str]:
    """Words separated by whitespace; quotes keep spaces in a word. One pass over `text`."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == "\\" and quote == '"' and i + 1 < n and text[i + 1] in '"\\':
                current.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
            else:
                current.append(ch)
        elif ch in "\"'" and not in_word:
            quote, in_word = ch, True
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
                if len(words) > MAX_WORDS:
                    raise UsageError(f"more than {MAX_WORDS} words")
        else:
            current.append(ch)
            in_word = True
        i += 1
    if quote is not None:
        raise UsageError(f"a {quote} quote is not closed")
    if in_word:
        words.append("".join(current))
    if len(words) > MAX_WORDS:
        raise UsageError(f"more than {MAX_WORDS} words")
    return words


# Argument types -----------------------------------------------------------------------------------


def story_ref(word: str) -> tuple[int, int]:
    """`1.3` as (epic, story)."""
    match = _STORY.fullmatch(word)
    if match is None:
        raise UsageError(f"{_shown(word)} is not a story id such as 1.3")
    epic, story = int(match.group(1)), int(match.group(2))
    if epic > STORY_ID_MAX or story > STORY_ID_MAX:
        raise UsageError(f"{_shown(word)} is not a story id the marketplace can hold")
    return epic, story


def user_ref(word: str) -> str:
    """`@login` as the login."""
    match = _LOGIN.fullmatch(word)
    if match is None:
        raise UsageError(f"{_shown(word)} is not a GitHub user such as @octocat")
    return match.group(1)


def option(word: str, name: str) -> str | None:
    """The value of `name=value`, or None when `word` is not that option."""
    head, sep, value = word.partition("=")
    return value if sep and head.lower() == name else None


def integer(word: str, what: str, low: int, high: int) -> int:
    if not word.isascii() or not word.isdigit() or len(word) > 6:
        raise UsageError(f"{what} must be a whole number from {low} to {high}, not {_shown(word)}")
    value = int(word)
    if not low <= value <= high:
        raise UsageError(f"{what} must be from {low} to {high}, not {value}")
    return value


def _shown(word: str) -> str:
    return repr(word if len(word) <= 40 else word[:37] + "...")
