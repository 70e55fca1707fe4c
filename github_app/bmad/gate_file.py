"""BMAD QA gate files: `<qaLocation>/gates/{epic}.{story}-{slug}.yml`.

A gate file is untrusted input pushed to any branch, so it is size-limited before parsing and parsed with
`github_app.bmad.safe_yaml` only (no aliases, bounded values and depth). Every reason to reject it raises
`GateFileError` with a message meant for the QA who committed it; smaller oddities that do not change the
outcome go to `GateDocument.problems`.

Which story: the `story:` field is the authority and the file name is the fallback. An unquoted
`story: 1.10` reaches us as the float 1.1, so a number is accepted only when the file name confirms it;
otherwise the file is rejected with a request to quote the value rather than guessing.

Expiry: a gate whose `expires` is in the past is still parsed and reported (the check run shows it as
stale), but it is NOT accepted: an expired gate does not count toward DONE, whatever its decision. QA has
to re-review and commit a fresh gate. See `github_app.domain.story_machine.accepted_gate`.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import yaml

from github_app.bmad import safe_yaml
from github_app.bmad.core_config import describe_yaml_error, normalize_path
from github_app.bmad.gate_kind import gate_yaml_text, ids_in_name, is_gate_file, is_regular_gate_name, missing_gate_hint
from github_app.bmad.story_file import BmadFileError
from github_app.bounded import MAX_STORY_NUMBER, bounded_repr, clean_text, clip, storable_number

DEFAULT_MAX_BYTES = 64 * 1024


class GateFileError(BmadFileError):
    """A gate file that cannot be used; the message says what to fix."""


class GateDecision(enum.StrEnum):
    PASS = "PASS"
    CONCERNS = "CONCERNS"
    FAIL = "FAIL"
    WAIVED = "WAIVED"


_DECISIONS = ", ".join(d.value for d in GateDecision)


@dataclass(frozen=True)
class GateDocument:
    epic: int
    story: int
    gate: GateDecision
    waiver_active: bool
    waiver_reason: str | None
    expires: datetime | None
    reviewer: str | None
    status_reason: str | None
    quality_score: int | float | None
    path: str
    problems: tuple[str, ...] = ()

    def is_expired(self, now: datetime) -> bool:
        """True once `now` has reached `expires`. A naive `now` is taken as UTC."""
        if self.expires is None:
            return False
        return _as_utc(now) >= self.expires


_NAME_ID = re.compile(r"^(?P<epic>\d+)\.(?P<story>\d+)(?P<suffix>[A-Za-z]+)?(?P<third>\.\d+(?=[.\-_]))?(?P<rest>.*)$")
_FIELD_ID = re.compile(
    r"^(?:story\s*)?(?P<epic>\d+)\.(?P<story>\d+)(?P<suffix>[A-Za-z]+)?(?P<third>\.\d+)?$", re.IGNORECASE
)


def is_gate_path(path: str, gate_dir: str) -> bool:
    """Whether a changed file is a gate file: a YAML or Markdown file directly in the gates folder
    (its subfolders hold superseded verdicts; see `github_app.bmad.gate_kind`)."""
    return is_gate_file(path, gate_dir)


def gate_id_from_path(path: str) -> tuple[int, int] | None:
    """`(epic, story)` from a gate file name, None when the name carries no story id.

    Raises GateFileError for ids the marketplace cannot store (`1.3A-x.yml`).
    """
    match = _NAME_ID.match(normalize_path(path).rsplit("/", 1)[-1])
    if match is None:
        return None
    return _reject_unstorable(match, "the file name")


def parse_gate_file(path: str, raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> GateDocument:
    """Parse and validate a gate file's bytes. Raises GateFileError when it cannot be used."""
    if len(raw) > max_bytes:
        raise GateFileError(f"gate file is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GateFileError(f"gate file is not UTF-8 text (byte {exc.start})") from exc
    text = gate_yaml_text(path, text)
    try:
        data: Any = safe_yaml.load(text)
    except yaml.YAMLError as exc:
        where = "gate file is not valid YAML"
        if path.lower().endswith(".md"):
            where = "Markdown gate file holds no readable YAML (write the gate in a ```yaml block or front matter)"
        raise GateFileError(f"{where}: {describe_yaml_error(exc)}") from exc
    if data is None:
        raise GateFileError("gate file is empty")
    if not isinstance(data, dict):
        raise GateFileError(
            f'gate file should be a mapping of keys to values (gate: PASS, story: "1.3", ...), not a {_yaml_kind(data)}'
        )

    problems: list[str] = []
    epic, story = _story_id(data.get("story"), path, problems)
    if data.get("gate") is None:
        raise GateFileError(f"gate file has no gate field; expected one of {_DECISIONS}{missing_gate_hint(data)}")
    gate = _decision(data.get("gate"))
    waiver_active, waiver_reason = _waiver(data.get("waiver"), gate, problems)
    return GateDocument(
        epic=epic,
        story=story,
        gate=gate,
        waiver_active=waiver_active,
        waiver_reason=waiver_reason,
        expires=_expires(data.get("expires")),
        reviewer=_text(data.get("reviewer"), "reviewer", problems),
        status_reason=_text(data.get("status_reason"), "status_reason", problems),
        quality_score=_quality_score(data.get("quality_score"), problems),
        path=path,
        problems=tuple(problems),
    )


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "single string"
    return type(value).__name__


def _reject_unstorable(match: re.Match[str], where: str) -> tuple[int, int]:
    """`(epic, story)` of a matched id; raises GateFileError for one the marketplace cannot store."""
    story_id = clip(f"{match['epic']}.{match['story']}{match['suffix'] or ''}{match['third'] or ''}", 24)
    if match["suffix"]:
        raise GateFileError(
            f"{where} names story {story_id}, which has a letter suffix; the marketplace stores epic and "
            f"story numbers as integers, so a gate for {story_id} cannot be recorded"
        )
    if match["third"]:
        raise GateFileError(
            f"{where} names story {story_id}, which has three numbers; the marketplace stores only an epic "
            f"and a story number"
        )
    epic, story = storable_number(match["epic"]), storable_number(match["story"])
    if epic is None or story is None:
        raise GateFileError(
            f"{where} names story {story_id}, whose numbers are too large; epic and story numbers go up to "
            f"{MAX_STORY_NUMBER}"
        )
    return epic, story


def _story_id(value: object, path: str, problems: list[str]) -> tuple[int, int]:
    # The file name only matters when the field is missing or numeric, so an odd name must not block a
    # gate whose story field is fine.
    try:
        from_name = gate_id_from_path(path)
        name_error: GateFileError | None = None
    except GateFileError as exc:
        from_name, name_error = None, exc
    if value is None or (isinstance(value, str) and not value.strip()):
        if name_error is not None:
            raise name_error
        if from_name is None or not is_regular_gate_name(path):
            raise GateFileError(
                'gate file names no story: add story: "<epic>.<story>" (for example story: "1.3") or name '
                "the file {epic}.{story}-{slug}.yml"
            )
        return from_name

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise GateFileError(f'story should be a quoted "<epic>.<story>" such as "1.3", not {bounded_repr(value)}')
    if isinstance(value, int):
        raise GateFileError(f'story: {value} has no epic number; write it as "<epic>.<story>", such as "1.{value}"')
    if isinstance(value, float):
        if name_error is not None:
            raise name_error
        return _story_from_float(value, from_name, ids_in_name(path))

    match = _FIELD_ID.match(value.strip())
    if match is None:
        raise GateFileError(f'story {bounded_repr(value)} is not an epic and story number such as "1.3"')
    from_field = _reject_unstorable(match, "the story field")
    if from_name is not None and from_name != from_field:
        problems.append(
            f"the file name says story {from_name[0]}.{from_name[1]} but the story field says "
            f"{from_field[0]}.{from_field[1]}; using the story field"
        )
    return from_field


def _story_from_float(value: float, from_name: tuple[int, int] | None, named: list[tuple[int, int]]) -> tuple[int, int]:
    # YAML turns `story: 1.10` into 1.1, so the number alone cannot tell story 1 from story 10: an id
    # written in the file name (at its start, or anywhere, as in 14.story-14.3-x.yml) must confirm it.
    if math.isfinite(value) and from_name is not None and float(f"{from_name[0]}.{from_name[1]}") == value:
        return from_name
    confirming = {ident for ident in named if math.isfinite(value) and float(f"{ident[0]}.{ident[1]}") == value}
    if len(confirming) == 1:
        return confirming.pop()
    if from_name is not None:
        raise GateFileError(
            f"story: {value} (written as a number) does not match the file name's story "
            f"{from_name[0]}.{from_name[1]}; write the story quoted, for example "
            f'story: "{from_name[0]}.{from_name[1]}"'
        )
    raise GateFileError(
        f"story: {value} is written as a number, which is ambiguous because YAML reads 1.10 as 1.1; "
        f'write it quoted, for example story: "{value}"'
    )


def _decision(value: object) -> GateDecision:
    if value is None:
        raise GateFileError(f"gate file has no gate field; expected one of {_DECISIONS}")
    if isinstance(value, str):
        try:
            return GateDecision(value.strip().upper())
        except ValueError:
            pass
    raise GateFileError(f"gate {bounded_repr(value)} is not one of {_DECISIONS}")


def _waiver(value: object, gate: GateDecision, problems: list[str]) -> tuple[bool, str | None]:
    if value is not None and not isinstance(value, dict):
        if gate is GateDecision.WAIVED:
            raise GateFileError(
                f'gate is WAIVED but waiver is {bounded_repr(value)}; write waiver: {{active: true, reason: "..."}}'
            )
        problems.append(f"waiver should be a mapping, not {bounded_repr(value)}; ignored")
        return False, None
    waiver = value or {}
    active = waiver.get("active") is True
    reason_value = waiver.get("reason")
    reason_text = clean_text(reason_value).strip() if isinstance(reason_value, str) else ""
    reason = reason_text or None
    if gate is GateDecision.WAIVED:
        if not active:
            raise GateFileError(
                f"gate is WAIVED but waiver.active is {bounded_repr(waiver.get('active'))}, not true; a waived gate "
                f'needs waiver: {{active: true, reason: "..."}}'
            )
        if reason is None:
            raise GateFileError("gate is WAIVED but the waiver has no reason; add waiver.reason")
    return active, reason


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _expires(value: object) -> datetime | None:
    if value is None:
        return None
    # YAML already turns unquoted timestamps into datetime, and bare dates into date.
    try:
        if isinstance(value, datetime):
            return _as_utc(value)
        if isinstance(value, date):
            return datetime.combine(value, time(), tzinfo=UTC)
        if isinstance(value, str) and value.strip():
            return _as_utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:00-05:00 is past year 9999 in UTC
        pass
    raise GateFileError(f'expires {bounded_repr(value)} is not an ISO 8601 date-time such as "2025-01-14T00:00:00Z"')


def _text(value: object, key: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return clean_text(value).strip() or None
    if isinstance(value, int | float | bool):
        return str(value)
    problems.append(f"{key} should be text, not a {_yaml_kind(value)}; ignored")
    return None


def _quality_score(value: object, problems: list[str]) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        problems.append(f"quality_score {bounded_repr(value)} is not a number from 0 to 100; ignored")
        return None
    return value
