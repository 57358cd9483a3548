"""Triage for ``corral fix`` on the stdlib ``ast``: most raw tasks and threads are kept,
awaited or subclassed, and saying so needs no LibCST pass (whose position metadata costs
about a second per large file). Only files with a statement-level candidate go to LibCST.

The reasons are the codemod's own (``fixes.py`` uses the same strings), so a refusal reads
the same whichever path produced it; a test runs both over the refusal fixtures.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from .findings import Finding

__all__ = [
    "ASSIGNED",
    "FIXABLE",
    "REFERENCE",
    "SUBCLASS",
    "Refusal",
    "banned_name",
    "call_span",
    "is_subclass_finding",
    "needs_codemod",
    "reason_for_parent",
]

ASSIGNED = "result is assigned"
SUBCLASS = "a Thread subclass: its run() cannot be moved mechanically"
REFERENCE = "not a call (an import, base class or other reference): remove it when unused"
TASK_CODES = frozenset({"CRL201", "CRL202", "CRL203"})
THREAD_CODE = "CRL101"
FIXABLE = TASK_CODES | {THREAD_CODE}
"""The codes ``corral fix`` may rewrite (where the finding is a fire-and-forget statement)."""


@dataclass(frozen=True, order=True)
class Refusal:
    """A finding ``corral fix`` left alone, and why (shown as ``not fixed: <reason>``)."""

    path: str
    line: int
    col: int
    code: str
    reason: str


Span = tuple[int, int, int, int]
"""Start line, start column, end line, end column (0-based characters, end exclusive)."""


def call_span(finding: Finding) -> Span:
    """Where the called expression must be for the finding to be about the call itself.

    ``threading.Thread.__init__(self)`` starts where ``threading.Thread`` does; only the end
    tells that the call is to ``__init__``, not to the banned class.
    """
    return (finding.line, finding.col - 1, finding.end_line, finding.end_col - 1)


def banned_name(finding: Finding) -> str:
    """The qualified name the finding is about (the engine's typed field, never the message)."""
    return finding.qualname


def is_subclass_finding(finding: Finding) -> bool:
    """An instantiation of a class deriving from a banned class (the class statement itself
    is a reference to the base, like an import)."""
    return finding.kind == "instantiation"


def reason_for_parent(kind: str, attr: str = "") -> str:
    """Why a call whose result is used is not fire-and-forget (``kind`` names the parent)."""
    if kind == "attribute":
        return "result is cancelled" if attr == "cancel" else f"result is used (.{attr})"
    return {
        "assign": ASSIGNED,
        "await": "result is awaited",
        "return": "result is returned",
        "yield": "result is yielded",
        "arg": "result is passed to another call",
        "collection": "result is stored in a collection",
        "with": "result is used as a context manager",
    }.get(kind, "result is used in an expression")


def _kind(parent: ast.AST | None) -> tuple[str, str]:
    if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        return "assign", ""
    if isinstance(parent, ast.Await):
        return "await", ""
    if isinstance(parent, ast.Return):
        return "return", ""
    if isinstance(parent, (ast.Yield, ast.YieldFrom)):
        return "yield", ""
    if isinstance(parent, ast.Attribute):
        return "attribute", parent.attr
    if isinstance(parent, (ast.Call, ast.keyword, ast.Starred)):
        return "arg", ""
    if isinstance(parent, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
        return "collection", ""
    if isinstance(parent, ast.withitem):
        return "with", ""
    return "expression", ""


class _Index:
    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.parents: dict[ast.AST, ast.AST] = {}
        self.calls: dict[Span, ast.Call] = {}
        for node in ast.walk(tree):  # breadth first: the innermost call at a position wins
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            if isinstance(node, ast.Call):
                func = node.func
                end_line = func.end_lineno or func.lineno
                end = _char_col(lines, end_line, func.end_col_offset or 0)
                start = _char_col(lines, func.lineno, func.col_offset)
                self.calls[(func.lineno, start, end_line, end)] = node

    def reason(self, node: ast.AST) -> str:
        return reason_for_parent(*_kind(self.parents.get(node)))

    def is_statement(self, node: ast.AST) -> bool:
        return isinstance(self.parents.get(node), ast.Expr)


def _char_col(lines: list[str], line: int, byte_col: int) -> int:
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if text.isascii():
        return byte_col
    return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def needs_codemod(
    text: str, findings: Sequence[Finding]
) -> tuple[bool, list[Refusal], list[Refusal]]:
    """(whether LibCST must run, refusals, deferred references) decided on ``ast`` alone.

    When any finding is a statement-level candidate the answer is "run the codemod" and the
    lists are empty: the codemod then decides everything for the file.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True, [], []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = _Index(tree, lines)
    refusals: list[Refusal] = []
    references: list[Refusal] = []
    for f in findings:
        if f.code not in TASK_CODES and f.code != THREAD_CODE:
            continue
        if is_subclass_finding(f):
            refusals.append(Refusal(f.path, f.line, f.col, f.code, SUBCLASS))
            continue
        call = index.calls.get(call_span(f))
        if call is None:
            references.append(Refusal(f.path, f.line, f.col, f.code, REFERENCE))
            continue
        reason = _task_reason(index, call, f) if f.code in TASK_CODES else None
        if f.code == THREAD_CODE:
            reason = _thread_reason(index, call, f)
        if reason is None:
            return True, [], []
        refusals.append(Refusal(f.path, f.line, f.col, f.code, reason))
    return False, refusals, references


def _task_reason(index: _Index, call: ast.Call, finding: Finding) -> str | None:
    if finding.code == "CRL203":
        name = call.func.attr if isinstance(call.func, ast.Attribute) else ""
        if name != "create_task":
            return f"`{banned_name(finding) or name}` has no spawn form"
    if index.is_statement(call):
        return None
    return index.reason(call)


def _thread_reason(index: _Index, call: ast.Call, finding: Finding) -> str | None:
    name = banned_name(finding)
    if name != "threading.Thread":
        return f"`{name or ast.unparse(call.func)}` has no mechanical rewrite"
    parent = index.parents.get(call)
    if not (isinstance(parent, ast.Attribute) and parent.attr == "start"):
        return index.reason(call)
    start = index.parents.get(parent)
    if not (isinstance(start, ast.Call) and start.func is parent):
        return "the thread's start method is not called"
    if start.args or start.keywords:
        return "start() called with arguments"
    if index.is_statement(start):
        return None
    return index.reason(start)
