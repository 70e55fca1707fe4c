"""The test architect's `gate-decision.json` (TEA `bmad-testarch-trace`, `{test_artifacts}/gate-decision.json`).

Schema 0.1.0: `gate_status` (PASS, CONCERNS, FAIL, WAIVED), `rationale`, `target {type, id, label}` and
coverage fields. `target.id` is the sprint key of the story (`1-4-sign-in-...`). Real files carry fields
outside the schema (`snapshot_at`, `rule_applied`, `prior_decision`), so anything else is ignored. A
`NOT_EVALUATED` gate, or one about an epic or a release, decides nothing. The file is untrusted: it is
size-limited, parsed as JSON only, and every reason it cannot be used raises `GateDecisionError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from github_app.bmad.gate_file import GateDecision
from github_app.bmad.sprint_status import parse_story_key

MAX_BYTES = 64 * 1024
NOT_EVALUATED = "NOT_EVALUATED"
_DECISIONS = ", ".join(d.value for d in GateDecision)


class GateDecisionError(ValueError):
    """The file cannot be used; the message is meant for the QA who pushed it."""


@dataclass(frozen=True)
class TeaGateDecision:
    key: str
    epic: int
    story: int
    gate: GateDecision | None  # None: NOT_EVALUATED, nothing decided
    rationale: str | None
    target_type: str


def parse_gate_decision(text: str | bytes, path: str = "gate-decision.json") -> TeaGateDecision | None:
    """The decision about one story; None when the file decides nothing about a story (NOT_EVALUATED,
    or a target that is an epic, a release or a hotfix)."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_BYTES:
        raise GateDecisionError(f"{path} is {len(raw)} bytes, over the {MAX_BYTES}-byte limit")
    try:
        data: Any = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise GateDecisionError(f"{path} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise GateDecisionError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except (RecursionError, ValueError) as exc:
        raise GateDecisionError(f"{path} cannot be read as JSON ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise GateDecisionError(f"{path} should be a JSON object with gate_status and target")

    target = data.get("target")
    if not isinstance(target, dict):
        raise GateDecisionError(f"{path} has no target object naming the story")
    target_type = target.get("type", "story")
    if not isinstance(target_type, str):
        raise GateDecisionError(f"{path}: target.type should be a word such as story")
    if target_type.strip().lower() != "story":
        return None
    key = target.get("id")
    if not isinstance(key, str) or not key.strip():
        raise GateDecisionError(f"{path}: target.id should be the story's sprint key, such as 1-4-sign-in")
    key = key.strip()
    try:
        epic, number, _slug = parse_story_key(key)
    except ValueError as exc:
        raise GateDecisionError(f"{path}: target.id {key[:80]!r}: {exc}") from exc

    status = data.get("gate_status")
    if not isinstance(status, str):
        raise GateDecisionError(f"{path}: gate_status should be one of {_DECISIONS}")
    word = status.strip().upper()
    rationale = data.get("rationale")
    note = rationale.strip()[:500] if isinstance(rationale, str) and rationale.strip() else None
    if word == NOT_EVALUATED:
        return TeaGateDecision(key, epic, number, None, note, "story")
    try:
        gate = GateDecision(word)
    except ValueError as exc:
        raise GateDecisionError(f"{path}: gate_status {status[:40]!r} is not one of {_DECISIONS}") from exc
    return TeaGateDecision(key, epic, number, gate, note, "story")
