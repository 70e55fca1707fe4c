"""`bmad-app demo` is the README's first command: it runs here exactly as a newcomer runs it, so the
scenario cannot rot. It must finish every step, pay each escrow once with the fee split exactly, leave
no file outside its temporary directory and never touch the per-user data directory of `serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_cli import ROOT, clean_env


def test_the_demo_runs_the_whole_product_and_leaves_nothing_behind(tmp_path: Path) -> None:
    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir()
    home.mkdir()
    env = clean_env(home, TMPDIR=str(temp), GITHUB_WEBHOOK_SECRET="short")  # broken config: the demo ignores it
    result = subprocess.run(
        [sys.executable, "-m", "github_app", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for line in (
        "installation.created",
        "story 1.1: story_created              - -> DRAFT",
        "/bmad validate 1.1",
        "story 1.1: story_approved             DRAFT -> APPROVED",
        "story 1.1: changes_requested          READY_FOR_REVIEW -> IN_PROGRESS",
        "check run 'BMAD story'",
        ": failure (",
        ": success (",
        "story 1.1: completed                  READY_FOR_REVIEW -> DONE",
        "story 1.2: completed                  READY_FOR_REVIEW -> DONE",
        "expert            0.00 ->     1,425.00 USDC  (+1,425.00)",
        "treasury          0.00 ->        75.00 USDC  (+75.00)",
        "expert            0.00 ->     1,425.00 USDC-SPL  (+1,425.00)",
        "release transactions signed: 2 (one per escrow)",
        "Audit log of story 1.1",
        "Every step happened.",
    ):
        assert line in out, line
    assert "HTTP 202" in out and "HTTP 4" not in out and "HTTP 5" not in out
    # Its temporary directory is gone, nothing else was written, the data directory of `serve` untouched.
    assert os.listdir(temp) == []
    assert sorted(p.name for p in home.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "tmp"]
    assert not (ROOT / "demo.sqlite3").exists()


def test_a_payout_that_is_not_exact_fails_the_demo() -> None:
    from github_app.demo.scenario import AMOUNT, FEE_BPS, DemoResult, check_result

    fee = AMOUNT * FEE_BPS // 10_000
    paid = {
        "polygon:expert": {"before": 0, "after": AMOUNT - fee},
        "polygon:treasury": {"before": 0, "after": fee},
        "solana:expert": {"before": 0, "after": AMOUNT - fee},
        "solana:treasury": {"before": 0, "after": fee},
    }
    assert check_result(DemoResult(ok=False, balances=paid)) == []
    twice = {**paid, "solana:expert": {"before": 0, "after": 2 * (AMOUNT - fee)}}
    assert check_result(DemoResult(ok=False, balances=twice)) == [
        f"the expert was not paid exactly {AMOUNT - fee} on solana"
    ]
    assert len(check_result(DemoResult(ok=False))) == 4
