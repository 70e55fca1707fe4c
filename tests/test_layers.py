"""The domain holds the rules and their vocabulary; it does not reach into the database layer."""

from __future__ import annotations

import ast
from pathlib import Path

DOMAIN = Path(__file__).resolve().parent.parent / "github_app" / "domain"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_domain_does_not_import_the_database_layer() -> None:
    for path in sorted(DOMAIN.glob("*.py")):
        offending = {m for m in imported_modules(path) if m.startswith(("github_app.db", "sqlalchemy"))}
        assert not offending, f"{path.name} imports {sorted(offending)}"


def test_the_database_enums_are_the_domain_vocabulary() -> None:
    from github_app.db import enums
    from github_app.domain import vocabulary

    assert enums.StoryStatus is vocabulary.StoryStatus and enums.Role is vocabulary.Role
