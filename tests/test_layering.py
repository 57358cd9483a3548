"""Layering is one-way: nothing imports the CLI entry point, the rule index never reaches
back into the engine that uses it."""

from __future__ import annotations

import ast
from pathlib import Path

LINT = Path(__file__).resolve().parent.parent / "lint_rules"


def _imports() -> dict[str, set[str]]:
    """Module -> the sibling modules it imports, at module level or inside functions."""
    graph: dict[str, set[str]] = {}
    for path in LINT.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "corral.lint_rules."
            ):
                found.add(node.module.split(".")[2])
        graph[path.stem] = found
    return graph


def test_nothing_imports_the_cli() -> None:
    importers = sorted(name for name, deps in _imports().items() if "cli" in deps)
    assert importers == []


def test_ruleset_does_not_reach_back_into_the_engine() -> None:
    graph = _imports()
    seen: set[str] = set()
    todo = ["ruleset"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
    assert "engine" not in seen and "resolver" not in seen
