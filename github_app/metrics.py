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
    "Webhook deliveries received, by event and outcome "
    "(accepted, duplicate, ping, bad_signature, malformed, too_large, unavailable)",
    ["event", "outcome"],
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
