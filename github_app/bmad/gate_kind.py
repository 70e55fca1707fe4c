"""Which files in the gates folder are gates, and where their YAML is.

- Only files directly in the gates folder count. Its subfolders (`gates/archive/1.2A-.../...yml`) hold
  superseded verdicts that QA moved aside; reading them would let an old PASS decide a story.
- BMAD names a gate `{epic}.{story}-{slug}.yml`. Real repositories also write `14.story-14.3-x.yml`,
  `epic-14.14.1-x.yml` and Markdown gates (`3.2.1.0-x.md`, a heading and then the YAML, or a fenced
  ```yaml block). Such irregular gates are read only when they name their story in `story:`; the file
  name decides nothing for them.
"""

from __future__ import annotations

import re

from github_app.bmad.core_config import is_under, normalize_dir, normalize_path

GATE_EXTENSIONS = (".yml", ".yaml", ".md")
_NOT_GATES = frozenset({"readme.md", "index.md"})
_REGULAR_NAME = re.compile(r"^\d+\.\d+[A-Za-z]*(?:\.\d+)?(?:[-.][^/]*)?\.ya?ml$", re.IGNORECASE)
_NAME_IDS = re.compile(r"(?<![\d.])(\d{1,6})\.(\d{1,6})(?![\d])")
_FENCED_YAML = re.compile(r"^\s{0,3}(```|~~~)\s*ya?ml\s*$", re.IGNORECASE)
_MAX_SCAN_LINES = 4000


def is_gate_file(path: str, gate_dir: str) -> bool:
    """A YAML or Markdown file directly in the gates folder."""
    if not is_under(path, gate_dir):
        return False
    try:
        folder = normalize_dir(gate_dir)
    except ValueError:
        return False
    rest = normalize_path(path)[len(folder) + 1 :]
    name = rest.lower()
    return "/" not in rest and name.endswith(GATE_EXTENSIONS) and not name.startswith(".") and name not in _NOT_GATES


def is_regular_gate_name(path: str) -> bool:
    """BMAD's `{epic}.{story}-{slug}.yml`: a name whose story id may stand in for a missing `story:`."""
    return _REGULAR_NAME.match(normalize_path(path).rsplit("/", 1)[-1]) is not None


def ids_in_name(path: str) -> list[tuple[int, int]]:
    """Every `{epic}.{story}` written anywhere in a file name (`14.story-14.3-x.yml` -> 14.3)."""
    name = normalize_path(path).rsplit("/", 1)[-1][:300]
    return [(int(epic), int(story)) for epic, story in _NAME_IDS.findall(name)]


def gate_yaml_text(path: str, text: str) -> str:
    """The part of a gate file that holds its YAML.

    A `.yml` gate is YAML, except that some put the gate in front matter and notes after it (`---`,
    keys, `---`, Markdown): then the front matter is the gate. A `.md` gate holds its YAML in a fenced
    ```yaml block, in front matter, or after its leading Markdown headings.
    """
    lines = text.splitlines()[:_MAX_SCAN_LINES]
    front = _front_matter(lines)
    if front is not None:
        return front
    if not path.lower().endswith(".md"):
        return text
    for index, line in enumerate(lines):
        if _FENCED_YAML.match(line):
            block: list[str] = []
            for inner in lines[index + 1 :]:
                if inner.strip().startswith(("```", "~~~")):
                    return "\n".join(block)
                block.append(inner)
            return "\n".join(block)
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    return "\n".join(lines[start:])


def _front_matter(lines: list[str]) -> str | None:
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    if start >= len(lines) or lines[start].strip() != "---":
        return None
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == "---":
            after = [line for line in lines[end + 1 :] if line.strip()]
            return "\n".join(lines[start + 1 : end]) if after else None
    return None


def missing_gate_hint(data: dict[object, object]) -> str:
    """What to write when a gate has no `gate:` but says its decision under another key."""
    for key in ("status", "gate_decision", "decision", "gate_status", "result"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return f" (it has {key}: {value.strip()[:40]}; the decision must be written as gate: <decision>)"
    return ""
