"""Real BMAD files from public repositories (`/work/shared/corpus/bmad-v4`, or `BMAD_CORPUS_DIR`): each
corpus file with the path it had in its repository, read from the corpus's `SOURCES.md`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

CORPUS_DIR = Path(os.environ.get("BMAD_CORPUS_DIR", "/work/shared/corpus/bmad-v4"))


@dataclass(frozen=True)
class CorpusFile:
    kind: str  # stories | gates | configs
    file: Path
    repo: str
    path: str  # the path in its repository

    def read(self) -> bytes:
        return self.file.read_bytes()

    def text(self) -> str:
        return self.read().decode("utf-8", errors="replace")


def missing(message: str) -> None:
    """Shared reference material that is not on this machine: a skip on a developer's machine, a
    failure under CI=1, where a test that quietly checks nothing is worse than a red build."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def corpus_files(kind: str | None = None) -> list[CorpusFile]:
    """The corpus's files; a skip when the corpus is not on this machine (a failure under CI=1)."""
    sources = CORPUS_DIR / "SOURCES.md"
    if not sources.is_file():
        missing(f"the BMAD corpus is not on this machine ({sources} is missing; set BMAD_CORPUS_DIR)")
    found: list[CorpusFile] = []
    for line in sources.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] not in ("stories", "gates", "configs"):
            continue
        if kind is None or cells[0] == kind:
            found.append(CorpusFile(cells[0], CORPUS_DIR / cells[1], cells[2], cells[3]))
    return found


def corpus_file(kind: str, repo: str, path: str) -> CorpusFile:
    for entry in corpus_files(kind):
        if (entry.repo, entry.path) == (repo, path):
            return entry
    raise LookupError(f"{repo}:{path} is not in the corpus")
