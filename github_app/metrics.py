"""Prometheus metrics, served on GET /metrics."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

DELIVERIES_RECEIVED = Counter(
    "webhook_deliveries_received_total",
    "Webhook deliveries received, by event (GitHub's event names; `other` for any other value) and outcome "
    "(accepted, duplicate, ping, bad_signature, malformed, too_large, unsupported_encoding, busy: over the "
    "in-flight body budget, body_timeout, client_gone, unavailable)",
    ["event", "outcome"],
)
HTTP_CONNECTIONS_CLOSED = Counter(
    "http_connections_closed_total",
    "Connections the server closed on a client, by reason (header_timeout, over_capacity: the oldest "
    "connection still sending or waiting for its request, closed for a new one; refused: a new connection "
    "closed because every other one had a request being handled)",
    ["reason"],
)
HTTP_CONNECTIONS_OPEN = Gauge(
    "http_connections_open", "Open HTTP connections (sampled when scraped)", multiprocess_mode="livesum"
)
HTTP_BODY_BYTES_IN_FLIGHT = Gauge(
    "http_body_bytes_in_flight",
    "Bytes of request bodies held by the server (sampled when scraped)",
    multiprocess_mode="livesum",
)
DELIVERIES_PROCESSED = Counter(
    "webhook_deliveries_processed_total",
    "Deliveries taken from the inbox by a worker, by event and outcome (done, retry, dead, lost_lease)",
    ["event", "outcome"],
)
LOCK_CONFLICTS = Counter(
    "webhook_lock_conflicts_total",
    "Handler transactions the database rolled back as a deadlock or serialization failure, by event; each "
    "is retried at once, without spending one of the delivery's attempts",
    ["event"],
)
HANDLER_FAILURES = Counter("webhook_handler_failures_total", "Handler runs that raised, by event", ["event"])
INBOX_DEPTH = Gauge(
    "webhook_inbox_depth", "Inbox rows by state (sampled when scraped)", ["state"], multiprocess_mode="max"
)
PROCESSING_LATENCY = Histogram(
    "webhook_processing_latency_seconds",
    "From a delivery's receipt to the commit of its handling",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
INGRESS_BATCH_SIZE = Histogram(
    "webhook_ingress_batch_size",
    "Deliveries committed together by the ingress (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
OUTBOX_SENT = Counter(
    "github_outbox_sent_total",
    "Outbox rows the sender worked on, by kind and outcome "
    "(created, adopted, recovered: made by a create whose answer was lost, updated, failed, "
    "deferred: waiting for GitHub's content-creation budget or for a rate-limit wait to end)",
    ["kind", "outcome"],
)
OUTBOX_PENDING = Gauge(
    "github_outbox_pending",
    "Outbox rows whose latest version is not on GitHub yet (sampled by the sender while idle)",
    multiprocess_mode="max",
)


def exposition() -> tuple[bytes, str]:
    """The metrics page. When `serve` runs several processes (HTTP and worker), each writes its
    metrics to files in PROMETHEUS_MULTIPROC_DIR and the page adds them up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def forget_process(pid: int | None) -> None:
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


ESCROW_RELEASES = Counter(
    "escrow_releases_total",
    "Escrow release outcomes, by chain and outcome (released, waiting, failed, lost_lease, retry)",
    ["chain", "outcome"],
)
ESCROW_FUNDING = Counter(
    "escrow_funding_checks_total",
    "Pending escrows read on-chain, by chain and outcome (funded, not_funded, mismatch, error)",
    ["chain", "outcome"],
)
