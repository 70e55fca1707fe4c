"""Limits on what untrusted text can cost: numbers that fit the database, text the database accepts,
and values short enough to put in a message or a log line.

Everything a repository or a pull request author writes passes through here before it reaches a
message, a log line or a row: a value echoed back must never be larger than the reader needs, and a
number or a character the database refuses must be refused here, file by file, instead of failing the
whole delivery at insert time.
"""

from __future__ import annotations

import re
import reprlib

# Epic and story numbers are PostgreSQL INTEGER columns.
MAX_STORY_NUMBER = 2**31 - 1
_MAX_NUMBER_DIGITS = len(str(MAX_STORY_NUMBER))

# NUL cannot be stored in PostgreSQL text; the other C0 controls (but tab and newlines), DEL and the
# C1 controls (U+0080-U+009F, e.g. the CSI that starts a terminal escape) are never meant in a title or
# a description and confuse every screen that shows them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# YAML's "\uD83D\uDE00" (how JSON writers and ensure_ascii dumpers spell an emoji) reaches Python as two
# surrogates, which no UTF-8 database accepts: a pair is joined into its character, half of one dropped.
_SURROGATE = re.compile(r"[\ud800-\udfff]")

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxdict = 6
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 6
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlong = 40


def storable_number(digits: str | None) -> int | None:
    """The value of an epic or story number written in decimal digits, or None when it is not one the
    marketplace can store (empty, not digits, or above 2^31-1). Never converts a long digit string."""
    if not digits or len(digits) > _MAX_NUMBER_DIGITS or not digits.isdecimal():
        return None
    value = int(digits)
    return value if value <= MAX_STORY_NUMBER else None


def clip(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters, saying how long it was when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def bounded_repr(value: object, limit: int = 80) -> str:
    """`repr(value)` that looks at a bounded part of the value: nested and shared containers (a YAML
    alias bomb), very long strings and numbers too long to print all cost the same few characters."""
    try:
        text = _repr.repr(value)
    except ValueError:  # an int past Python's digit limit refuses to become text at all
        text = f"<{type(value).__name__} too long to show>"
    return clip(text, limit)


def clean_text(text: str) -> str:
    """Text safe to store: without NUL and the other control characters a person does not type, and
    valid Unicode (UTF-16 surrogates joined or dropped)."""
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")
    return _CONTROL.sub("", text)
