"""Which Markdown files in a story folder are stories.

Story folders also hold validation reports (`1.3_validation_report.md`), review summaries
(`4.5-review-summary.md`, titled `# Story 4.5: Review Summary & Gap Analysis`), appendices
(`2.1/2.1.appendix.md`), epic summaries and sprint backlogs. They name a story's number, so read as a story
they would overwrite its title and criteria or create a story that does not exist. A file is a story when:

- its name is BMAD's `{epic}.{story}.{slug}.md` or `{epic}.{story}.story.md` (a `-` or `_` after the number
  is tolerated), or it has no number in its name and its title supplies one (`# Story 1.3: ...`);
- neither its name nor its title says it is another kind of document (the words below);
- it has at least one of a story's sections (status, story statement, acceptance criteria).

Anything else is reported by kind and never merged into a story.
"""

from __future__ import annotations

import re

from github_app.bmad.core_config import normalize_path


class NotAStory(ValueError):
    """A Markdown file in the story folder that is another kind of document."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path}: not read as a story: {kind}; it is reported, never merged into a story")
        self.path = path
        self.kind = kind


# Words at the end of a file name's slug that name another kind of document.
_NAME_KINDS: dict[str, str] = {
    "report": "a report",
    "appendix": "an appendix",
    "analysis": "an analysis",
    "backlog": "a backlog",
    "retrospective": "a retrospective",
    "retro": "a retrospective",
    "checklist": "a checklist",
}
# "summary" alone could be a story about a summary screen; after these words it is a document.
_SUMMARY_OF = frozenset({"review", "qa", "epic", "sprint", "story", "completion", "implementation", "gap"})
_LEADING_KINDS = {"epic": "an epic document", "sprint": "a sprint document"}

# Title phrases, at the title's start or after a dash at its end: "Story 1.3: X - Validation Report".
_TITLE_KINDS: tuple[tuple[str, str], ...] = (
    ("validation report", "a validation report"),
    ("qa report", "a QA report"),
    ("review report", "a review report"),
    ("test report", "a test report"),
    ("review summary", "a review summary"),
    ("summary document", "a summary"),
    ("gap analysis", "an analysis"),
    ("impact analysis", "an analysis"),
    ("appendix", "an appendix"),
    ("sprint backlog", "a sprint backlog"),
)
_MAX_TITLE = 300


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def kind_from_name(path: str) -> str | None:
    """What the file name says the file is, when that is not a story."""
    name = normalize_path(path).rsplit("/", 1)[-1]
    stem = name[:-3] if name.lower().endswith(".md") else name
    words = _words(stem)
    if not words:
        return None
    if words[0] in _LEADING_KINDS:
        return _LEADING_KINDS[words[0]]
    while words and words[-1] == "story":
        words.pop()
    if not words:
        return None
    last = words[-1]
    if last in _NAME_KINDS:
        return _NAME_KINDS[last]
    if last == "summary" and len(words) >= 2 and (words[-2] in _SUMMARY_OF or words[-2].isdigit()):
        return "a summary"
    return None


def kind_from_title(title_rest: str) -> str | None:
    """What a title says the file is; `title_rest` is the title after any `Story 1.3:` prefix."""
    text = " ".join(re.sub(r"[*_`\[\]]", " ", title_rest[:_MAX_TITLE]).split()).lower()
    if re.match(r"^epic\b", text):
        return "an epic document"
    for phrase, kind in _TITLE_KINDS:
        if text.startswith(phrase):
            return kind
        tail = text.rsplit(phrase, 1)
        if len(tail) == 2 and not tail[1].strip() and re.search(r"[-–—:|(]\s*$", tail[0]):
            return kind
    return None
