"""Logs: one JSON object per line when asked, and never a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from github_app.logs import setup_logging

SECRET = "webhook-secret-do-not-leak"
TOKEN = "ghs_" + "A1b2C3d4" * 20  # the long installation token format


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_delivery_fields(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    setup_logging("INFO", "json", [SECRET], buffered=False)
    logging.getLogger("github_app.ingress").info(
        "delivery received", extra={"delivery_id": "d-1", "event": "push", "action": None, "outcome": "accepted"}
    )
    [line] = capsys.readouterr().err.splitlines()
    doc = json.loads(line)
    assert doc["message"] == "delivery received" and doc["level"] == "info"
    assert (doc["delivery_id"], doc["event"], doc["outcome"]) == ("d-1", "push", "accepted")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_and_tokens_never_reach_the_log(
    fmt: str, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_logging("DEBUG", fmt, [SECRET], buffered=False)
    log = logging.getLogger("github_app.test")
    log.warning("configured with %s", SECRET)
    log.info("calling GitHub", extra={"authorization": f"token {TOKEN}", "note": f"got {TOKEN}"})
    log.error("jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl was refused")
    err = capsys.readouterr().err
    assert SECRET not in err and TOKEN not in err and "eyJhbGciOiJSUzI1NiJ9" not in err
    assert err.count("[redacted]") >= 4
