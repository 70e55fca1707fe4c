"""YAML from untrusted repository files: size-capped, `safe_load` semantics, and no aliases.

`yaml.safe_load` already refuses arbitrary objects, but an alias (`*a`) lets a few hundred bytes expand
into millions of nodes ("billion laughs"); BMAD files never need one, so a document that uses one is
refused. Deep nesting that would exhaust the parser's recursion is refused the same way.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

from github_app.bmad.core_config import describe_yaml_error


class UnsafeYamlError(ValueError):
    """The text cannot be read as YAML here; the message says why, for the person who wrote it."""


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML's own signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str | bytes, *, max_bytes: int, name: str) -> Any:  # noqa: ANN401 - any YAML value
    """The single YAML document in `text`. Raises UnsafeYamlError for text over `max_bytes`, text that is
    not UTF-8, invalid YAML, aliases and nesting too deep to parse."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > max_bytes:
        raise UnsafeYamlError(f"{name} is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsafeYamlError(f"{name} is not UTF-8 text") from exc
    try:
        return yaml.load(decoded, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UnsafeYamlError(f"{name} is not valid YAML ({describe_yaml_error(exc)})") from exc
    except RecursionError as exc:
        raise UnsafeYamlError(f"{name} is nested too deeply") from exc
