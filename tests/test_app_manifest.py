"""The GitHub App manifest asks for exactly the events the handlers subscribe to."""

from __future__ import annotations

from pathlib import Path

import yaml

from handlers import router

ROOT = Path(__file__).resolve().parent.parent
# Delivered to every GitHub App whatever it subscribes to; a manifest cannot list them.
ALWAYS_DELIVERED = {"installation", "installation_repositories"}


def test_the_manifest_subscribes_to_exactly_the_handled_events() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text(encoding="utf-8"))
    handled = set(router._shallow_routes) | set(router._deep_routes)
    assert set(manifest["default_events"]) == handled - ALWAYS_DELIVERED
    assert len(manifest["default_events"]) == len(set(manifest["default_events"]))
