"""Verify and parse one webhook delivery, with no I/O (the sans-I/O half of the ingress).

Only what the inbox needs is extracted: headers, and the `action`, `installation.id` and
`repository.full_name` top-level fields. The body is kept exactly as received.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

import simdjson
from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub never delivers a larger event.

# GitHub's delivery id is a GUID; an event name is a lower-case identifier (the longest today is 40).
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# How much of a value the sender chose a log line may quote.
QUOTE_CHARS = 40

# GitHub's webhook events: the only values a metric label takes, besides `other`. A name outside this
# list may still be a real new event (it is stored and handled); only its metric series is `other`.
KNOWN_EVENTS = frozenset(
    """
    branch_protection_configuration branch_protection_rule check_run check_suite code_scanning_alert
    commit_comment create custom_property custom_property_values delete dependabot_alert deploy_key
    deployment deployment_protection_rule deployment_review deployment_status discussion
    discussion_comment fork github_app_authorization gollum installation installation_repositories
    installation_target issue_comment issue_dependencies issues label marketplace_purchase member
    membership merge_group meta milestone org_block organization package page_build
    personal_access_token_request ping project project_card project_column projects_v2 projects_v2_item
    projects_v2_status_update public pull_request pull_request_review pull_request_review_comment
    pull_request_review_thread push registry_package release repository repository_advisory
    repository_dispatch repository_import repository_ruleset repository_vulnerability_alert
    secret_scanning_alert secret_scanning_alert_location secret_scanning_scan security_advisory
    security_and_analysis sponsorship star status sub_issues team team_add watch workflow_dispatch
    workflow_job workflow_run
    """.split()
)


def event_label(event: str) -> str:
    """The metric label for an event name: a known event, or `other`, so no sender can add series."""
    return event if event in KNOWN_EVENTS else "other"


def quote(value: str | None) -> str | None:
    """At most QUOTE_CHARS of a value the sender chose, for a log line."""
    if value is None or len(value) <= QUOTE_CHARS:
        return value
    return f"{value[:QUOTE_CHARS]}... ({len(value)} characters)"


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    payload: bytes
    received_at: datetime


class RejectedDelivery(Exception):
    """A delivery we refuse: nothing is stored, the status and reason go back to GitHub."""

    def __init__(self, status: int, reason: str, outcome: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.outcome = outcome


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise RejectedDelivery(400, f"missing {name} header", "malformed")
    return value


def refuse_before_body(headers: Mapping[str, str]) -> None:
    """What the headers alone show GitHub never sends: refused before a byte of the body is read."""
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RejectedDelivery(415, "Content-Encoding is not supported: send the body as it is", "unsupported_encoding")
    if not headers.get("X-Hub-Signature-256"):
        raise RejectedDelivery(401, "missing X-Hub-Signature-256 header", "bad_signature")
    check_event_name(_header(headers, "X-GitHub-Event"))
    check_delivery_id(_header(headers, "X-GitHub-Delivery"))


def check_event_name(event: str) -> str:
    if not _EVENT_NAME.fullmatch(event):
        raise RejectedDelivery(
            400, "X-GitHub-Event is not an event name (lower-case letters, digits, _; at most 64)", "malformed"
        )
    return event


def check_delivery_id(delivery_id: str) -> str:
    if not _GUID.fullmatch(delivery_id):
        raise RejectedDelivery(400, "X-GitHub-Delivery is not a GUID", "malformed")
    return delivery_id


def verify_signature(body: bytes, signature: str | None, secrets: Sequence[str]) -> None:
    if not secrets:
        raise RejectedDelivery(401, "webhook secret not configured: refusing unverifiable deliveries", "bad_signature")
    if not signature:
        raise RejectedDelivery(401, "missing X-Hub-Signature-256 header", "bad_signature")
    for secret in secrets:  # any configured secret may match, so a rotation loses nothing
        try:
            validate_event(body, signature=signature, secret=secret)
            return
        except ValidationFailure:
            continue
    raise RejectedDelivery(401, "signature does not match", "bad_signature")


def json_payload(body: bytes, content_type: str) -> bytes:
    """The JSON document, from either content type GitHub can be configured to send."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise RejectedDelivery(400, "form body is not valid x-www-form-urlencoded", "malformed") from exc
        values = fields.get("payload")
        if not values:
            raise RejectedDelivery(400, "form body has no 'payload' field", "malformed")
        return values[0].encode("utf-8")
    if content_type and not content_type.startswith("application/json"):
        raise RejectedDelivery(400, f"unsupported content type {content_type!r}", "malformed")
    return body


_JSON_REASONS = {
    "DEPTH_ERROR": "body is not valid JSON (nested more than 1024 levels deep)",
    "BIGINT_ERROR": "body is not valid JSON (a number does not fit in 64 bits)",
    "UTF8_ERROR": "body is not valid JSON (not UTF-8)",
}


class _ParserBusy(Exception):
    pass


class _Fields:
    """The three top-level fields the inbox needs, read with simdjson: it validates the whole document
    (a malformed body is still refused) but builds Python objects only for what is read, about 4x
    cheaper than a full `json.loads` of a 28 KB delivery."""

    parser = simdjson.Parser()

    @classmethod
    def read(cls, payload: bytes) -> tuple[object, object, object]:
        try:
            return cls._read(cls.parser, payload)
        except _ParserBusy:
            # A document from the shared parser is still referenced somewhere (simdjson forbids reuse
            # then): this call gets a parser of its own, and so do later ones.
            cls.parser = simdjson.Parser()
            return cls._read(cls.parser, payload)

    @staticmethod
    def _read(parser: simdjson.Parser, payload: bytes) -> tuple[object, object, object]:
        try:
            doc = parser.parse(payload)
        except (ValueError, RuntimeError) as exc:
            # simdjson names every problem with the document (DEPTH_ERROR past 1024 levels, BIGINT_ERROR
            # for a number past 64 bits, TAPE_ERROR...) by a code before a colon; only that code is sent
            # back. Any other error is the parser's own state, not the document's.
            code = str(exc).split(":", 1)[0]
            if isinstance(exc, RuntimeError) and not code.endswith("_ERROR"):
                raise _ParserBusy from exc
            if isinstance(exc, UnicodeDecodeError):
                code = "UTF8_ERROR"
            reason = _JSON_REASONS.get(code, f"body is not valid JSON ({code[:40]})")
            raise RejectedDelivery(400, reason, "malformed") from exc
        try:
            if not isinstance(doc, simdjson.Object):
                raise RejectedDelivery(400, "body is not a JSON object", "malformed")
            installation, repository = doc.get("installation"), doc.get("repository")
            return (
                doc.get("action"),
                installation.get("id") if isinstance(installation, simdjson.Object) else None,
                repository.get("full_name") if isinstance(repository, simdjson.Object) else None,
            )
        finally:
            # Drop every reference into the parser's buffer so the next delivery can reuse it.
            doc = installation = repository = None  # noqa: F841


def top_level_fields(payload: bytes) -> tuple[str | None, int | None, str | None]:
    if not payload:
        raise RejectedDelivery(400, "body is not valid JSON (empty)", "malformed")
    action, installation_id, full_name = _Fields.read(payload)
    return (
        action if isinstance(action, str) else None,
        installation_id if isinstance(installation_id, int) and not isinstance(installation_id, bool) else None,
        full_name if isinstance(full_name, str) else None,
    )


def parse_delivery(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], received_at: datetime) -> Delivery:
    """Raise RejectedDelivery, or return the delivery to store. Signature first: an unsigned
    request learns nothing about what else is wrong with it."""
    verify_signature(body, headers.get("X-Hub-Signature-256"), secrets)
    event = check_event_name(_header(headers, "X-GitHub-Event"))
    delivery_id = check_delivery_id(_header(headers, "X-GitHub-Delivery"))
    payload = json_payload(body, headers.get("Content-Type", "application/json").lower())
    action, installation_id, full_name = top_level_fields(payload)
    return Delivery(
        delivery_id=delivery_id,
        event=event,
        action=action if isinstance(action, str) else None,
        installation_id=installation_id if isinstance(installation_id, int) else None,
        repository=full_name if isinstance(full_name, str) else None,
        payload=payload,
        received_at=received_at,
    )
