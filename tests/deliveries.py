"""Build signed webhook deliveries shaped like GitHub's, from the recorded payload examples."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "github-webhooks"


@cache
def _load(event: str, name: str) -> str:
    return (FIXTURES / event / name).read_text(encoding="utf-8")


def payload(event: str, name: str = "payload.json", **top_level: Any) -> dict[str, Any]:
    """A fresh copy of a recorded payload (`pull_request`, `opened.payload.json`), with overrides."""
    data = copy.deepcopy(json.loads(_load(event, name)))
    data.update(top_level)
    return data


def guid(name: str) -> str:
    """A delivery id shaped like GitHub's (a GUID), the same for the same name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(
    event: str,
    body: bytes,
    secret: str | None,
    delivery_id: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "123",
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/test",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()
