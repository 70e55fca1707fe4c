"""Tests over the shared corpus and the Prisma reference never pass quietly in CI when the files are gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import os, sys
import pytest
from tests.corpus import corpus_files
try:
    corpus_files()
except pytest.fail.Exception:
    print("failed")
except pytest.skip.Exception:
    print("skipped")
"""


def run_probe(tmp_path: Path, ci: str | None) -> str:
    env = {"PATH": "/usr/bin:/bin", "BMAD_CORPUS_DIR": str(tmp_path / "nowhere"), "PYTHONPATH": str(ROOT)}
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_missing_corpus_fails_under_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    assert run_probe(tmp_path, "1") == "failed"
    assert run_probe(tmp_path, None) == "skipped"
