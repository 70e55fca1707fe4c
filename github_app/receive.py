"""`bmad-app receive`: sign a payload file with the configured secret and deliver it, to a running
app over HTTP or to this process's own inbox and worker (`--local`).

Either way the delivery passes the same verification as one from GitHub (signature, headers, JSON), so
what works here works from GitHub, and a payload GitHub would refuse is refused here with the same
reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from github_app.config import Settings

WEBHOOK_PATH = "/api/github/webhooks"


class ReceiveError(Exception):
    """Something the user must fix before anything is sent."""


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def read_payload(path: Path) -> bytes:
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ReceiveError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ReceiveError(f"{str(path)!r} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ReceiveError(f"{str(path)!r} is not a JSON object: a webhook payload is one")
    return body


def signed_headers(event: str, body: bytes, secret: str, delivery_id: str) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
        "User-Agent": "bmad-app-receive",
    }


def webhook_url(url: str) -> str:
    """`http://host:3000` and `http://host:3000/api/github/webhooks` both mean the webhook endpoint."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReceiveError(f"--url must be an http(s) URL, got {url!r}")
    return url.rstrip("/") + ("" if parts.path.rstrip("/") else WEBHOOK_PATH)


def default_url(settings: Settings) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.port}"


def secret_of(settings: Settings) -> str:
    if not settings.webhook_secrets:
        raise ReceiveError("GITHUB_WEBHOOK_SECRET is not set: the app refuses unsigned deliveries")
    # The first secret is the current one during a rotation (README: rotating the webhook secret).
    return settings.webhook_secrets[0]


async def post(url: str, headers: dict[str, str], body: bytes) -> Outcome:
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(url, data=body, headers=headers) as resp,
        ):
            text = await resp.text()
    except aiohttp.ClientError as exc:
        raise ReceiveError(f"cannot reach {url}: {exc}") from exc
    try:
        message = str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        message = text.strip()
    return Outcome(resp.status, message)


async def process_locally(settings: Settings, headers: dict[str, str], body: bytes) -> Outcome:
    """Store the delivery in this database's inbox as the ingress would, then run the worker (and the
    outbox sender, when GitHub is configured) until there is nothing left to do."""
    from github_app.db.types import utcnow
    from github_app.inbox import store
    from github_app.outbox.sender import OutboxSender
    from github_app.runtime import Runtime
    from github_app.server import make_worker, open_writer
    from github_app.webhook import RejectedDelivery, parse_delivery

    try:
        delivery = parse_delivery(headers, body, settings.webhook_secrets, utcnow())
    except RejectedDelivery as rejected:
        return Outcome(rejected.status, rejected.reason)
    runtime = await Runtime.create(settings)
    try:
        from github_app.server import default_router

        writer = await open_writer(runtime)  # the ingress's own writer for this database
        try:
            stored = await writer.insert_batch([delivery])
        finally:
            await writer.close()
        worker = make_worker(runtime, default_router())
        await worker.run_until_idle(timeout=max(60.0, settings.worker_lease_seconds))
        if runtime.github is not None:
            await OutboxSender(runtime, writes_per_second=settings.github_writes_per_second).run_until_idle()
        async with runtime.engine.connect() as conn:
            row = await store.get_row(conn, delivery.delivery_id)
    finally:
        await runtime.close()
    if row is None:  # pragma: no cover - the insert above committed it
        return Outcome(500, "the delivery is not in the inbox")
    already = "" if delivery.delivery_id in stored else " (already in the inbox)"
    if row.state == "done":
        return Outcome(200, f"processed{already}")
    error = (row.last_error or "").strip().splitlines()
    return Outcome(500, f"{row.state}{already}: {error[-1] if error else 'not processed'}")


def receive(
    settings: Settings, event: str, payload_path: Path, *, url: str | None, local: bool, delivery_id: str | None
) -> tuple[str, Outcome]:
    if not event.strip():
        raise ReceiveError("--event must name a GitHub event, e.g. push")
    body = read_payload(payload_path)
    if delivery_id is not None:
        try:
            uuid.UUID(delivery_id)
        except ValueError:
            raise ReceiveError(
                f"--delivery must be a GUID, as GitHub's delivery ids are; got {delivery_id!r}"
            ) from None
    delivery_id = delivery_id or str(uuid.uuid4())
    headers = signed_headers(event.strip(), body, secret_of(settings), delivery_id)
    if local:
        return delivery_id, asyncio.run(process_locally(settings, headers, body))
    return delivery_id, asyncio.run(post(webhook_url(url or default_url(settings)), headers, body))
