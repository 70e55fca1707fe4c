"""Prometheus metrics about the app's calls to the GitHub API."""

from __future__ import annotations

from typing import cast

from prometheus_client import REGISTRY, Counter

API_CALLS_NAME = "github_api_calls_total"


def _api_calls_counter() -> Counter:
    try:
        return Counter(
            API_CALLS_NAME,
            "HTTP requests sent to the GitHub API, by method and response status ('error' when no response).",
            ["method", "status"],
        )
    except ValueError:
        # The module is being imported a second time (importlib.reload, or under another name): the
        # default registry refuses a second collector of the same name, so keep counting on the first.
        return cast(Counter, REGISTRY._names_to_collectors[API_CALLS_NAME])


API_CALLS = _api_calls_counter()


def record_api_call(method: str, status: int | str) -> None:
    API_CALLS.labels(method=method.upper(), status=str(status)).inc()
