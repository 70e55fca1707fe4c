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


PACKAGE = DOMAIN.parent


def _import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, anywhere in its text (type-checking
    and function-level imports count: a cycle hidden there is still a cycle to reason about)."""
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[name] = {m for m in edges if m in modules and m != name}
    return graph


def test_no_module_of_the_app_imports_itself_through_others() -> None:
    graph = _import_graph()
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                cycles.append([*path, start])
            elif nxt > start and nxt not in path:  # each cycle once, from its smallest module
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
        assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles[:5]]}"
