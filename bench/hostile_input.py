"""CPU time of the parsers, the linker and the command grammar on the hostile inputs the fuzz tests
list (each once), beside the one-second bound per call that a delivery must stay within.

    python bench/hostile_input.py

Prints CPU milliseconds per case (process time: insensitive to other load on the machine) and exits 1
when any case spends more than the bound.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from github_app.bmad.core_config import parse_core_config  # noqa: E402
from github_app.bmad.gate_file import parse_gate_file  # noqa: E402
from github_app.bmad.repo_config import parse_repo_config, story_ids_in_branch  # noqa: E402
from github_app.bmad.story_file import BmadFileError, NotAStory, parse_story_file  # noqa: E402
from github_app.domain.command_grammar import parse_comment  # noqa: E402
from github_app.domain.linking import link_pull_request  # noqa: E402
from tests.test_command_grammar import HOSTILE_COMMENTS  # noqa: E402
from tests.test_fuzz_parsers import HOSTILE_GATES, HOSTILE_PR_TEXTS, HOSTILE_STORIES  # noqa: E402

BOUND_SECONDS = 1.0


def cpu(call: Callable[[], Any]) -> float:
    started = time.process_time()
    try:
        call()
    except (BmadFileError, NotAStory):
        pass
    return time.process_time() - started


def main() -> None:
    cases: list[tuple[str, Callable[[], Any]]] = []
    for name, text in HOSTILE_STORIES.items():
        cases.append((f"story: {name}", lambda t=text: parse_story_file("docs/stories/1.3.x.md", t)))
    for name, raw in HOSTILE_GATES.items():
        cases.append((f"gate: {name}", lambda r=raw: parse_gate_file("docs/qa/gates/1.3-x.yml", r)))
        cases.append((f"repo config: {name}", lambda r=raw: parse_repo_config(r.replace(b"gate", b"story_dir"))))
        cases.append((f"core config: {name}", lambda r=raw: parse_core_config(r.replace(b"gate", b"devStoryLocation"))))
    for name, (body, branch) in HOSTILE_PR_TEXTS.items():
        cases.append(
            (
                f"PR text: {name}",
                lambda b=body, br=branch: link_pull_request(
                    title=b, body=b, head_branch=br, changed_files=[], story_dir="docs/stories"
                ),
            )
        )
    for name, (body, _, _) in HOSTILE_COMMENTS.items():
        cases.append((f"comment: {name}", functools.partial(parse_comment, body, "bmad-marketplace")))
    pattern = r"^(?P<epic>(\d+)+)\.(?P<story>\d+)$"
    cases.append(("configured branch pattern, catastrophic", lambda: story_ids_in_branch(pattern, "1" * 5_000 + "!")))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; bound {BOUND_SECONDS * 1000:.0f} ms CPU per call")
    worst = 0.0
    for name, call in cases:
        spent = cpu(call)
        worst = max(worst, spent)
        print(f"{spent * 1000:9.1f} ms  {name}")
    print(f"worst {worst * 1000:.1f} ms")
    if worst > BOUND_SECONDS:
        sys.exit(1)


if __name__ == "__main__":
    main()
