"""Tests over the shared corpus and the Prisma reference never pass quietly in CI when the files are gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Both kinds of reference material pointed at a folder that does not exist (the schema test's path is
# fixed beside the checkout, so it is replaced here), then what each test does about it.
PROBE = """
import sys
from pathlib import Path
import pytest
import tests.test_schema as schema
from tests.corpus import corpus_files

schema.SHARED_REFERENCE = Path(sys.argv[1]) / "prisma_reference.sql"
for name, call in (("corpus", corpus_files), ("prisma", schema.test_shipped_reference_sql_is_prismas_output)):
    try:
        call()
    except pytest.fail.Exception:
        print(name, "failed")
    except pytest.skip.Exception:
        print(name, "skipped")
    else:
        print(name, "ran")
"""


def run_probe(tmp_path: Path, ci: str | None) -> list[str]:
    nowhere = tmp_path / "nowhere"
    env = {"PATH": "/usr/bin:/bin", "BMAD_CORPUS_DIR": str(nowhere), "PYTHONPATH": str(ROOT)}
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(nowhere)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_missing_reference_material_fails_under_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    assert run_probe(tmp_path, "1") == ["corpus failed", "prisma failed"]
    assert run_probe(tmp_path, None) == ["corpus skipped", "prisma skipped"]
