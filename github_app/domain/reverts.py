"""Recognizing a revert PR, as GitHub's "Revert" button makes it: title `Revert "..."`, body
`Reverts owner/repo#7`, branch `revert-7-...`. A revert is never new work on a story."""

from __future__ import annotations

import re

# Bounded, linear patterns over bounded text: PR texts come from anyone.
_BODY = re.compile(r"Reverts ([A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100})#([0-9]{1,9})")
_BRANCH = re.compile(r"revert-([0-9]{1,9})-")
SCAN_CHARS = 4096


def reverted_pr(title: str, body: str, head_branch: str, repository: str) -> int | None:
    """The number of the PR this one reverts, or None when it is not a revert."""
    if not title.startswith("Revert"):
        return None
    found = _BODY.search(body[:SCAN_CHARS])
    if found and found.group(1).lower() == repository.lower():
        return int(found.group(2))
    branch = _BRANCH.match(head_branch[:SCAN_CHARS])
    if branch:
        return int(branch.group(1))
    return None
