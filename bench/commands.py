"""The bot command grammar's cost per kilobyte of comment, from 1 KiB to GitHub's 64 KiB limit.

    .venv/bin/python bench/commands.py

Prints CPU microseconds per KiB (process time, insensitive to other load on the machine) for typical
and hostile comments at each size, and each size's figure relative to the 1 KiB one: a grammar that is
linear in its input stays near 1.0x however large the comment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from github_app.domain.command_grammar import MAX_COMMENT_CHARS, parse_comment

SIZES = (1024, 4096, 16384, MAX_COMMENT_CHARS)
SHAPES: dict[str, Callable[[int], str]] = {
    "prose with commands": lambda n: (
        "Thanks, looks good.\n/bmad validate 1.3 score=8\n> quoted /bmad help\n```\n/bmad status\n```\n" * n
    )[:n],
    "one long quoted command": lambda n: ('/bmad block 1.3 "' + "x " * n)[:n],
    "unclosed quotes": lambda n: ("/bmad " + '"' * n)[:n],
    "fences and comments": lambda n: ("```\n<!--\n~~~\n" * n)[:n],
    "escaped quotes": lambda n: ('/bmad block "' + '\\"' * n)[:n],
}


def cpu_us_per_kib(text: str, rounds: int) -> float:
    started = time.process_time()
    for _ in range(rounds):
        parse_comment(text, "bmad-marketplace")
    return (time.process_time() - started) / rounds / (len(text) / 1024) * 1e6


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}; CPU µs per KiB (x: relative to 1 KiB)")
    print(f"{'comment':28}" + "".join(f"{size // 1024:>10} KiB" for size in SIZES))
    for name, make in SHAPES.items():
        figures = [cpu_us_per_kib(make(size), max(3, 200_000 // size)) for size in SIZES]
        cells = "".join(f"{f:>8.0f} {f / figures[0]:>4.1f}x" for f in figures)
        print(f"{name:28}{cells}")


if __name__ == "__main__":
    main()
