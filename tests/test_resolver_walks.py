"""The resolver's narrow walks visit what the general ones do, on real code.

``generic_visit`` reads a per-type field table instead of ``ast.iter_child_nodes``; the
binding walk skips expressions when a file holds no ``:=``; the loop-attribute search walks
statements only. Each is checked against the walk it replaces, over this interpreter's own
stdlib sample (so the 3.13 and 3.14 runs check their grammar too), and the walrus gate is
checked end to end.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

import pytest
from corral.lint_rules import resolver
from hypothesis import given
from hypothesis import strategies as st
from linthelpers import check

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SAMPLE = [STDLIB / "asyncio" / n for n in ("base_events.py", "tasks.py", "selector_events.py")]
SAMPLE += [STDLIB / n for n in ("threading.py", "typing.py", "dataclasses.py", "ast.py")]
SAMPLE += [
    STDLIB / "concurrent" / "futures" / "process.py",
    STDLIB / "email" / "_header_value_parser.py",
]


def _trees() -> list[tuple[str, ast.Module]]:
    out = []
    for path in SAMPLE:
        if path.exists():
            text = path.read_text("utf-8")
            out.append((text, ast.parse(text)))
    assert len(out) >= 6
    return out


TREES = _trees()


def test_child_nodes_are_iter_child_nodes_without_context_markers() -> None:
    for _, tree in TREES:
        for node in ast.walk(tree):
            expected = [
                c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.expr_context)
            ]
            assert resolver._child_nodes(node) == expected


def test_the_binding_walk_without_walrus_finds_every_local() -> None:
    checked = 0
    for _, tree in TREES:
        for node in ast.walk(tree):
            if any(isinstance(n, ast.NamedExpr) for n in ast.walk(node)):
                continue  # the gate is for walrus-free text
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                assert resolver._function_locals(node, walrus=False) == (
                    resolver._function_locals(node, walrus=True)
                )
                checked += 1
    assert checked > 500


def test_the_statement_walk_is_in_source_order() -> None:
    for _, tree in TREES:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                wanted = (ast.Assign, ast.AnnAssign, ast.FunctionDef, ast.ExceptHandler)
                full = [n for n in ast.walk(node) if isinstance(n, wanted)]
                full.sort(key=lambda n: (n.lineno, n.col_offset))
                assert [n for n in resolver._statement_walk(node) if isinstance(n, wanted)] == full


def test_method_locals_are_the_methods_own() -> None:
    source = (
        "class C:\n    def m(self, a, *rest, b):\n        [x for x in a]\n"
        "        y, *z = b\n        def inner():\n            loop = 1\n"
    )
    method = ast.parse(source).body[0].body[0]  # type: ignore[attr-defined]
    local = resolver._MethodLocals(method, walrus=False)
    assert all(n in local for n in ("self", "a", "rest", "b", "y", "z", "inner"))
    assert "x" not in local  # the comprehension's own
    assert "loop" not in local  # the nested function's own


@pytest.mark.parametrize("walrus", [True, False])
def test_a_name_a_walrus_binds_later_is_local_before_it(walrus: bool) -> None:
    """A walrus makes the name local for the whole function, even before it runs, so the
    call before it is not the module's banned alias; without a walrus it is."""
    binding = "(spawn := make())" if walrus else "spawn_other"
    source = (
        "import asyncio\n"
        "spawn = asyncio.create_task\n"
        "def f(make, spawn_other):\n"
        "    spawn(work())\n"
        f"    if {binding}:\n"
        "        pass\n"
    )
    lines = [f.line for f in check(source)]
    assert (4 in lines) is not walrus


@given(st.text(alphabet="ab\n\r\x0c\u2028 ", max_size=60))
def test_line_starts_count_lines_as_the_tokenizer_does(text: str) -> None:
    expected = [0, *(m.end() for m in re.finditer("\r\n?|\n", text))]
    assert resolver._line_starts(text) == expected


def _bodies_resolved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    real = resolver.Resolver._visit_function_body

    def recording(self, node, parent, quiet):  # type: ignore[no-untyped-def]
        names.append(node.name)
        return real(self, node, parent, quiet)

    monkeypatch.setattr(resolver.Resolver, "_visit_function_body", recording)
    return names


def test_a_non_ascii_file_skips_the_functions_that_name_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolved = _bodies_resolved(monkeypatch)
    source = (
        '"""Café orders."""\n'
        "import asyncio\n"
        "def total(prices):\n"
        "    return sum(prices)  # in €\n"
        "def start(job):\n"
        "    asyncio.create_task(job)\n"
    )
    assert [(f.line, f.code) for f in check(source)] == [(6, "CRL201")]
    assert resolved == ["start"]


def test_a_member_spelled_in_compatibility_characters_is_still_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parser reads identifiers in NFKC: ``create`` in fullwidth letters followed by
    ``_task`` is ``create_task``, so the skip must look for words in the NFKC text, not in
    the characters as written."""
    resolved = _bodies_resolved(monkeypatch)
    source = (
        "import asyncio\n"
        "def total(prices):\n"
        "    return sum(prices)\n"
        "def start(job):\n"
        "    asyncio.\uff43\uff52\uff45\uff41\uff54\uff45_task(job)\n"
    )
    assert [(f.line, f.code) for f in check(source)] == [(5, "CRL201")]
    assert resolved == ["start"]
