"""The import scan the subclass index relies on over-approximates: no import form hides."""

from __future__ import annotations

import ast

import pytest
from corral.lint_rules.imports_scan import imported_modules

CASES = [
    (b"import a.b as c, d\n", {"a.b", "d"}),
    (b"x = 1; from pkg import W\n", {"pkg", "pkg.W"}),
    (b"if x: from . import workers\n", {".", ".workers"}),
    (b"from pkg import workers, other as o\n", {"pkg", "pkg.workers", "pkg.other"}),
    (b"from .. import (a,  # a ) in a comment\n    b as c,\n)\n", {"..", "..a", "..b"}),
    (b"from \\\n  pkg.sub import \\\n  X\n", {"pkg.sub", "pkg.sub.X"}),
    (b"from ...up import Y\n", {"...up", "...up.Y"}),
    (b"from.mod import Z\n", {".mod", ".mod.Z"}),
    (b"import a . b\n", {"a.b"}),
    (b"yield from x; import y\n", {"y"}),
    (b"from fromage import x\n", {"fromage", "fromage.x"}),
    (b"# -*- coding: utf-7 -*-\nfrom pkg.my+AF8-w import W\n", {"pkg.my_w", "pkg.my_w.W"}),
    ("import \uff50kg\n".encode(), {"pkg"}),  # fullwidth p: NFKC, as the parser reads it
    (b"__import__('x')\nimportlib.import_module('y')\nimports = 1\n", set()),
    (b"# -*- coding: uft-8 -*-\nimport x\n", set()),  # undecodable: Python cannot run it
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_import_forms(source: bytes, expected: set[str]) -> None:
    assert set(imported_modules(source)) == expected


def _ast_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.add(module)
            joint = "" if module.endswith(".") else "."
            found.update(f"{module}{joint}{a.name}" for a in node.names if a.name != "*")
    return found


def test_the_scan_covers_every_import_the_parser_sees() -> None:
    """Over this repository and the stdlib's asyncio, concurrent and multiprocessing
    packages, everything ``ast`` finds is in the scan."""
    import asyncio
    import concurrent.futures
    import multiprocessing
    from pathlib import Path

    roots = [Path(__file__).resolve().parent.parent / "lint_rules"]
    roots += [Path(m.__file__).parent for m in (asyncio, concurrent.futures, multiprocessing)]
    checked = 0
    for root in roots:
        for path in root.rglob("*.py"):
            data = path.read_bytes()
            missing = _ast_modules(ast.parse(data)) - set(imported_modules(data))
            assert not missing, (path, missing)
            checked += 1
    assert checked > 50
