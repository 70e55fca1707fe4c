"""The one YAML reader for files that come from repositories (QA gates, BMAD's core config, the app's
repository configuration).

`yaml.safe_load` builds no objects, but it still expands aliases: a few hundred bytes of nested
`*aliases` describe billions of items, and anything that walks the result (an error message quoting the
value, a comparison, a log line) stalls the worker. None of these files needs anchors, so an alias is
refused while the document is being composed, before anything walks it; the number of values and the
nesting depth are bounded the same way, and so are integers (Python refuses to convert a number of more
than 4,300 digits, with an error YAML's reader does not expect).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import Node, ScalarNode

from github_app.bounded import clip

MAX_VALUES = 5_000
MAX_DEPTH = 20
MAX_INT_CHARS = 40


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            alias = clip(str(event.anchor), 40)
            raise ComposerError(None, None, f"aliases (*{alias}) are not allowed; write the value out", mark)
        self._values += 1
        if self._values > MAX_VALUES:
            raise ComposerError(None, None, f"more than {MAX_VALUES} values", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1

    def construct_bounded_int(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            raise ConstructorError(None, None, "a number must be a plain value", node.start_mark)
        if len(node.value) > MAX_INT_CHARS:
            raise ConstructorError(None, None, f"a number of {len(node.value)} characters is too long", node.start_mark)
        return self.construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_int)


def load(text: str) -> Any:
    """The single YAML document in `text`. Raises `yaml.YAMLError` for anything that cannot be read,
    including values no BMAD file needs (aliases, deep nesting, huge numbers, impossible dates)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError:
        raise
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:
        # e.g. `expires: 2025-02-30`: the reader accepts the shape, then datetime refuses the day.
        raise yaml.YAMLError(f"a value cannot be read ({clip(str(exc), 80)})") from exc
    finally:
        loader.dispose()
