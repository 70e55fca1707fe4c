"""What judging a pull request's files against the planning stages' documents costs, per file, from a
small PR to GitHub's 3000-file listing limit.

    .venv/bin/python bench/planning.py

Prints CPU microseconds per file (process time, insensitive to other load on the machine) for a PR of
ordinary source files, one of sharded PRD files and one of v6 planning artifacts, and each size's figure
relative to the smallest: the check is linear in the number of files when it stays near 1.0x.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from github_app.bmad.layout import detect_layout

SIZES = (10, 300, 3000)
PLANNING = detect_layout(
    {
        ".bmad-core/core-config.yaml": b"prd:\n  prdFile: docs/prd.md\n  prdShardedLocation: docs/prd\n",
        "_bmad/bmm/config.yaml": b'planning_artifacts: "{project-root}/_bmad-output/planning-artifacts"\n',
    }
).planning
SHAPES: dict[str, Callable[[int], list[str]]] = {
    "source files": lambda n: [f"src/module_{i}/file_{i}.py" for i in range(n)],
    "sharded PRD": lambda n: [f"docs/prd/section-{i}.md" for i in range(n)],
    "v6 planning artifacts": lambda n: [f"_bmad-output/planning-artifacts/product-brief-{i}.md" for i in range(n)],
}


def cpu_us_per_file(paths: list[str], rounds: int) -> float:
    started = time.process_time()
    for _ in range(rounds):
        PLANNING.stages_touched(paths)
    return (time.process_time() - started) / rounds / len(paths) * 1e6


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}; CPU µs per PR file (x: relative to {SIZES[0]} files)")
    print(f"{'PR files':24}" + "".join(f"{size:>12} files" for size in SIZES))
    for name, make in SHAPES.items():
        figures = [cpu_us_per_file(make(size), max(3, 30_000 // size)) for size in SIZES]
        cells = "".join(f"{f:>11.1f} {f / figures[0]:>4.1f}x" for f in figures)
        print(f"{name:24}{cells}")


if __name__ == "__main__":
    main()
