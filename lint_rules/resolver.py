"""Scope-aware name resolution over a stdlib ``ast`` tree, reporting references to banned APIs.

This is the one matcher behind every entry point (CLI, flake8 plugin, catalogue examples).
It follows how Python binds names rather than how they are spelled:

* imports and aliases (``import asyncio as aio``, ``from asyncio import create_task as ct``,
  ``from threading import *``, imports inside functions), and plain re-assignment of them;
* scopes: function bodies are resolved after the enclosing scope has run (as pyflakes does),
  a name bound anywhere in a function is local there, class bodies do not leak into methods,
  and a user's own ``def create_task`` or a parameter called ``asyncio`` shadows the import;
* receivers: ``loop.create_task`` is flagged only when ``loop`` is traced to
  ``asyncio.get_running_loop()`` and friends or an ``AbstractEventLoop`` annotation, in the
  same function or through ``self.<attr>`` assigned anywhere in the class;
* classes deriving from a banned class, and every instantiation of them in the file;
* dynamic lookups (``getattr``, ``importlib.import_module``, ``__import__``, ``sys.modules``,
  ``vars()``/``__dict__``), reported under the dynamic-evasion rule.

References inside ``if TYPE_CHECKING:`` blocks, annotations and the class argument of
``isinstance``/``issubclass`` are not reported: they never start anything.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .ruleset import GATHER, LOOP_FACTORIES, LOOP_TYPES, RuleSet

__all__ = ["RawFinding", "resolve_module"]


@dataclass(frozen=True)
class RawFinding:
    """A finding before suppressions: byte-offset column as ``ast`` gives it."""

    line: int
    col: int
    end_line: int
    end_col: int
    code: str
    message: str


class _Local:
    """A name bound to something we do not track (a def, a plain value, a parameter)."""

    def __repr__(self) -> str:
        return "LOCAL"


class _Loop:
    """A name or attribute traced to an event loop."""

    def __repr__(self) -> str:
        return "LOOP"


LOCAL = _Local()
LOOP = _Loop()


@dataclass(frozen=True)
class Dynamic:
    """A module or attribute reached through a dynamic lookup."""

    qualname: str


@dataclass(frozen=True)
class Subclass:
    """A class defined in this file that derives from a banned class."""

    code: str
    base: str


Value = str | Dynamic | Subclass | _Local | _Loop
_BUILTINS = {"getattr": "builtins.getattr", "__import__": "builtins.__import__"}
_BUILTINS.update({n: f"builtins.{n}" for n in ("vars", "isinstance", "issubclass", "map")})
_IMPORTERS = frozenset({"importlib.import_module", "builtins.__import__"})
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NEWLINE = re.compile("\r\n?|\n")  # line ends as the tokenizer counts them


@lru_cache(maxsize=64)
def _alias_pattern(names: frozenset[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, names))) + r")\b")


class Scope:
    __slots__ = ("_locals", "bindings", "class_loops", "globals", "kind", "node", "parent")

    def __init__(self, kind: str, node: ast.AST | None, parent: Scope | None) -> None:
        self.kind = kind
        self.node = node
        self.parent = parent
        self.bindings: dict[str, Value] = {}
        self.globals: set[str] = set()
        self.class_loops: frozenset[str] | None = None  # searched on first use
        self._locals: set[str] | None = None

    def binds_later(self, name: str) -> bool:
        """True if this function binds ``name`` anywhere (so it is local, even before binding)."""
        if self.kind != "function" or self.node is None:
            return False
        if self._locals is None:
            self._locals = _function_locals(self.node)
        return name in self._locals


def _function_locals(fn: ast.AST) -> set[str]:
    names: set[str] = set()
    declared: set[str] = set()
    args = getattr(fn, "args", None)
    if isinstance(args, ast.arguments):
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None:
                names.add(a.arg)
    body = getattr(fn, "body", [])
    stack: list[ast.AST] = list(body) if isinstance(body, list) else [body]
    while stack:
        node = stack.pop()
        if isinstance(node, _NESTED):
            if not isinstance(node, ast.Lambda):
                names.add(node.name)
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        stack.extend(ast.iter_child_nodes(node))
    return names - declared


def _const_str(node: ast.AST | None) -> str | None:
    """A string known at parse time: a literal, a concatenation of literals, a bare f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_str(node.left), _const_str(node.right)
        if left is not None and right is not None:
            return left + right
    if isinstance(node, ast.JoinedStr):
        parts = [_const_str(v) for v in node.values]
        if all(p is not None for p in parts):
            return "".join(p for p in parts if p is not None)
    return None


class Resolver:
    """Walks one module and collects raw findings for the enabled rules."""

    def __init__(self, rules: RuleSet, text: str | None = None, package: str | None = None) -> None:
        self.rules = rules
        self.package = package
        self.text = text
        self.member_lines: list[int] | None = None
        self.aliases: set[str] = set()
        self.line_starts: list[int] = []
        # the per-function skip compares spellings: only sound where identifiers are ASCII
        # (the parser NFKC-normalises the others)
        if text is not None and text.isascii():
            ends = list(_NEWLINE.finditer(text))
            newlines = [m.start() for m in ends]
            self.line_starts = [0, *(m.end() for m in ends)]
            self.member_lines = sorted(
                {bisect_right(newlines, m.start()) + 1 for m in rules.member_words.finditer(text)}
            )
        self.findings: list[RawFinding] = []
        self.seen: set[tuple[int, int]] = set()
        self.scope = Scope("module", None, None)
        self.module = self.scope
        self.tracked: set[str] = set(_BUILTINS)
        self.quiet = 0  # > 0 inside TYPE_CHECKING blocks and annotations
        self.deferred: list[tuple[ast.AST, Scope, int]] = []

    # -- driving ---------------------------------------------------------------------------
    def run(self, tree: ast.Module) -> list[RawFinding]:
        self.visit_body(tree.body)
        while self.deferred:
            node, parent, quiet = self.deferred.pop(0)
            if self._may_contain_findings(node):
                self._visit_function_body(node, parent, quiet)
        return self.findings

    def _may_contain_findings(self, node: ast.AST) -> bool:
        """A function whose lines name no banned member and no tracked alias cannot report
        anything, and its local bindings are invisible outside it, so it can be skipped."""
        if self.member_lines is None or self.text is None:
            return True
        first = node.lineno  # type: ignore[attr-defined]
        last = getattr(node, "end_lineno", None) or first
        i = bisect_left(self.member_lines, first)
        if i < len(self.member_lines) and self.member_lines[i] <= last:
            return True
        if not self.aliases:
            return False
        starts = self.line_starts
        end = starts[last] if last < len(starts) else len(self.text)
        pattern = _alias_pattern(frozenset(self.aliases))
        return pattern.search(self.text, starts[first - 1], end) is not None

    # node type -> unbound visitor, shared by every Resolver (no per-instance reference cycle,
    # so resolving can run with the garbage collector off)
    _dispatch: dict[type, Callable[[Resolver, Any], None]] = {}

    def visit(self, node: ast.AST) -> None:
        cls = type(node)
        method = self._dispatch.get(cls)
        if method is None:
            found: Callable[[Resolver, Any], None] = getattr(
                type(self), "visit_" + cls.__name__, type(self).generic_visit
            )
            method = self._dispatch[cls] = found
        method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def visit_body(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    # -- reporting -------------------------------------------------------------------------
    def report(self, node: ast.AST, code: str, message: str) -> None:
        if self.quiet:
            return
        line, col = node.lineno, node.col_offset  # type: ignore[attr-defined]
        if (line, col) in self.seen:
            return
        self.seen.add((line, col))
        end_line = getattr(node, "end_lineno", None) or line
        end_col = getattr(node, "end_col_offset", None) or col
        self.findings.append(RawFinding(line, col, end_line, end_col, code, message))

    def _summary(self, code: str) -> str:
        rule = self.rules.catalogue.get(code)
        return rule.summary if rule else code

    def report_name(self, node: ast.AST, qualname: str, code: str) -> None:
        self.report(node, code, f"`{qualname}`: {self._summary(code)}")

    # -- binding and lookup ----------------------------------------------------------------
    def bind(self, name: str, value: Value) -> None:
        scope = self.scope
        if name in scope.globals:
            scope = self.module
        scope.bindings[name] = value
        if value is not LOCAL:
            self.tracked.add(name)
            if isinstance(value, Subclass) or (
                isinstance(value, str) and (self.rules.lookup(value) or value in GATHER)
            ):
                self.aliases.add(name)

    def lookup(self, name: str) -> Value | None:
        if name not in self.tracked:
            return None
        scope: Scope | None = self.scope
        innermost = True
        while scope is not None:
            if scope.kind == "class" and not innermost:
                scope = scope.parent
                continue
            if name in scope.globals:
                scope = self.module
                innermost = False
                continue
            value = scope.bindings.get(name)
            if value is not None:
                return value
            if scope.binds_later(name):
                return LOCAL
            innermost = False
            scope = scope.parent
        return _BUILTINS.get(name)

    def resolve(self, node: ast.AST) -> Value | None:
        """What an expression refers to, as far as the bindings tell."""
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if isinstance(base, str):
                return f"{base}.{node.attr}"
            if isinstance(base, Dynamic):
                if node.attr == "__dict__":
                    return base
                return Dynamic(f"{base.qualname}.{node.attr}")
            return None
        if isinstance(node, ast.Call):
            return self._resolve_call(node)
        if isinstance(node, ast.Subscript):
            return self._resolve_subscript(node)
        return None

    def _resolve_call(self, node: ast.Call) -> Value | None:
        func = self.resolve(node.func)
        if not isinstance(func, str):
            return None
        if func in LOOP_FACTORIES:
            return LOOP
        if func in _IMPORTERS and node.args:
            name = _const_str(node.args[0])
            if name is None:
                return None
            if func == "builtins.__import__" and len(node.args) < 4 and not node.keywords:
                name = name.split(".")[0]  # __import__("a.b") returns the package a
            return Dynamic(name)
        if func == "builtins.getattr" and len(node.args) >= 2:
            base = self.resolve(node.args[0])
            attr = _const_str(node.args[1])
            if isinstance(base, (str, Dynamic)) and attr is not None:
                qual = base if isinstance(base, str) else base.qualname
                return Dynamic(f"{qual}.{attr}")
            return None
        if func == "builtins.vars" and len(node.args) == 1:
            base = self.resolve(node.args[0])
            if isinstance(base, (str, Dynamic)):
                return Dynamic(base if isinstance(base, str) else base.qualname)
        return None

    def _resolve_subscript(self, node: ast.Subscript) -> Value | None:
        key = _const_str(node.slice)
        if key is None:
            return None
        value = node.value
        if isinstance(value, ast.Attribute) and value.attr == "modules":
            if self.resolve(value.value) == "sys":
                return Dynamic(key)
        base = self.resolve(value)
        if isinstance(value, ast.Attribute) and value.attr == "__dict__" and isinstance(base, str):
            return Dynamic(f"{base[: -len('.__dict__')]}.{key}")
        if isinstance(base, Dynamic) and isinstance(value, (ast.Call, ast.Attribute)):
            return Dynamic(f"{base.qualname}.{key}")
        return None

    def _self_name(self) -> str | None:
        scope = self.scope
        if scope.kind != "function" or scope.parent is None or scope.parent.kind != "class":
            return None
        args = getattr(scope.node, "args", None)
        if isinstance(args, ast.arguments):
            positional = [*args.posonlyargs, *args.args]
            if positional:
                return positional[0].arg
        return None

    def _is_self_loop(self, node: ast.AST) -> bool:
        """``self.<attr>`` where the class assigns an event loop to ``<attr>`` in some method.

        The class is searched only when such a receiver is used, not for every class."""
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            return False
        parent = self.scope.parent
        if self.scope.kind != "function" or parent is None or parent.kind != "class":
            return False
        if node.value.id != self._self_name():
            return False
        if parent.class_loops is None:
            parent.class_loops = frozenset()  # guards the search against re-entry
            parent.class_loops = self._loop_attributes(parent.node)  # type: ignore[arg-type]
        return node.attr in parent.class_loops

    def _is_loop_annotation(self, node: ast.AST | None) -> bool:
        if node is None:
            return False
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except (SyntaxError, ValueError, MemoryError, RecursionError):
                return False  # not an expression this parser can build: not a loop type
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self._is_loop_annotation(node.left) or self._is_loop_annotation(node.right)
        if isinstance(node, ast.Subscript):  # Optional[AbstractEventLoop]
            inner = node.slice
            parts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return any(self._is_loop_annotation(p) for p in parts)
        value = self.resolve(node)
        return isinstance(value, str) and value in LOOP_TYPES

    def _value_of(self, node: ast.AST) -> Value:
        """The binding an assignment of ``node`` creates: tracked values propagate."""
        value = self.resolve(node)
        if value is None and self.rules.loop_methods and self._is_self_loop(node):
            return LOOP  # loop = self.loop
        return LOCAL if value is None else value

    # -- checks on references --------------------------------------------------------------
    def check_reference(self, node: ast.AST) -> bool:
        """Report ``node`` if it refers to a banned API; True if reported (skip its children)."""
        value = self.resolve(node)
        if isinstance(value, str):
            code = self.rules.lookup(value)
            if code is not None:
                self.report_name(node, value, code)
                return True
        elif isinstance(value, Dynamic):
            return self.check_dynamic(node, value)
        return False

    def check_dynamic(self, node: ast.AST, value: Dynamic) -> bool:
        code = self.rules.dynamic_code
        if code is None:
            return False
        banned = self.rules.banned_anywhere(value.qualname)
        if banned is None:
            return False
        self.report(
            node,
            code,
            f"`{value.qualname}` reached through a dynamic lookup evades {banned}: "
            f"{self._summary(code)}",
        )
        return True

    # -- statements ------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.bind(alias.asname, alias.name)
                code = self.rules.lookup(alias.name)
                if code is not None:
                    self.report_name(alias, alias.name, code)
            else:
                top = alias.name.split(".")[0]
                self.bind(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = self._absolute_module(node)
        if module is None:
            for alias in node.names:
                if alias.name != "*":
                    self.bind(alias.asname or alias.name, LOCAL)
            return
        for alias in node.names:
            if alias.name == "*":
                prefix = module + "."
                for target in (*self.rules.exact, *self.rules.all_exact):
                    rest = target[len(prefix) :] if target.startswith(prefix) else ""
                    if rest and "." not in rest:
                        self.bind(rest, target)
                continue
            qualname = f"{module}.{alias.name}"
            self.bind(alias.asname or alias.name, qualname)
            code = self.rules.lookup(qualname)
            if code is not None:
                self.report_name(alias, qualname, code)

    def _absolute_module(self, node: ast.ImportFrom) -> str | None:
        """``from .tasks import x`` inside package ``asyncio`` imports from ``asyncio.tasks``."""
        if not node.level:
            return node.module
        if self.package is None:
            return None
        parts = self.package.split(".")
        if node.level - 1 >= len(parts):
            return None
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        return f"{base}.{node.module}" if node.module else base

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        test = self.resolve(node.test)
        is_tc = test == "typing.TYPE_CHECKING" or (
            isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        )
        if is_tc:
            self.quiet += 1
            self.visit_body(node.body)
            self.quiet -= 1
        else:
            self.visit_body(node.body)
        self.visit_body(node.orelse)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.globals.update(node.names)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        value = self._value_of(node.value)
        for target in node.targets:
            self._assign(target, value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._quietly(node.annotation)
        if node.value is not None:
            self.visit(node.value)
        if self._is_loop_annotation(node.annotation):
            value: Value = LOOP
        elif node.value is not None:
            value = self._value_of(node.value)
        else:
            value = LOCAL
        self._assign(node.target, value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self.visit(node.target) if not isinstance(node.target, ast.Name) else None
        if isinstance(node.target, ast.Name):
            self.bind(node.target.id, LOCAL)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.bind(node.target.id, self._value_of(node.value))

    def _assign(self, target: ast.AST, value: Value) -> None:
        if isinstance(target, ast.Name):
            self.bind(target.id, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._assign(elt, LOCAL)
        elif isinstance(target, ast.Starred):
            self._assign(target.value, LOCAL)
        else:
            self.visit(target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._assign(node.target, LOCAL)
        self.visit_body(node.body)
        self.visit_body(node.orelse)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._assign(item.optional_vars, LOCAL)
        self.visit_body(node.body)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name, LOCAL)
        self.visit_body(node.body)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.bind(target.id, LOCAL)
            else:
                self.visit(target)

    # -- definitions -----------------------------------------------------------------------
    def _quietly(self, node: ast.AST | None) -> None:
        if node is not None:
            self.quiet += 1
            self.visit(node)
            self.quiet -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._visit_defaults(node.args)
        self._quietly(node.returns)
        self.bind(node.name, LOCAL)
        self.deferred.append((node, self.scope, self.quiet))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_defaults(node.args)
        self.deferred.append((node, self.scope, self.quiet))

    def _visit_defaults(self, args: ast.arguments) -> None:
        for default in (*args.defaults, *args.kw_defaults):
            if default is not None:
                self.visit(default)
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                self._quietly(arg.annotation)

    def _visit_function_body(self, node: ast.AST, parent: Scope, quiet: int) -> None:
        outer, outer_quiet = self.scope, self.quiet
        self.scope, self.quiet = Scope("function", node, parent), quiet
        args = node.args  # type: ignore[attr-defined]
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                self.bind(arg.arg, LOOP if self._is_loop_annotation(arg.annotation) else LOCAL)
        body = node.body  # type: ignore[attr-defined]
        if isinstance(body, list):
            self.visit_body(body)
        else:
            self.visit(body)
        self.scope, self.quiet = outer, outer_quiet

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        value: Value = LOCAL
        for base in node.bases:
            self.visit(base)
            resolved = self.resolve(base)
            if isinstance(resolved, Subclass):
                value = resolved
            elif isinstance(resolved, str):
                code = self.rules.lookup(resolved)
                if code in self.rules.subclass_codes and code is not None:
                    value = Subclass(code, resolved)
        for keyword in node.keywords:
            self.visit(keyword.value)
        outer = self.scope
        self.scope = Scope("class", node, outer)
        self.visit_body(node.body)
        self.scope = outer
        self.bind(node.name, value)

    def _loop_attributes(self, node: ast.ClassDef) -> frozenset[str]:
        """Attributes assigned an event loop in any method (``self.loop = get_event_loop()``)."""
        found: set[str] = set()
        for stmt in node.body:
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(stmt):
                targets: list[ast.expr]
                value: ast.expr | None
                annotation: ast.expr | None
                if isinstance(sub, ast.Assign):
                    targets, value, annotation = sub.targets, sub.value, None
                elif isinstance(sub, ast.AnnAssign):
                    targets, value, annotation = [sub.target], sub.value, sub.annotation
                else:
                    continue
                for target in targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                        if self._is_loop_annotation(annotation) or (
                            value is not None
                            and (self.resolve(value) is LOOP or self._is_self_loop(value))
                        ):
                            found.add(target.attr)
        return frozenset(found)

    # -- expressions -----------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.check_reference(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load) and self.check_reference(node):
            return
        self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        value = self._resolve_subscript(node)
        if isinstance(value, Dynamic) and self.check_dynamic(node, value):
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        resolved = self.resolve(func)
        if isinstance(resolved, Subclass):
            name = func.id if isinstance(func, ast.Name) else ast.unparse(func)
            self.report(
                node,
                resolved.code,
                f"`{name}` subclasses `{resolved.base}`: {self._summary(resolved.code)}",
            )
        elif isinstance(func, ast.Attribute) and func.attr in self.rules.loop_methods:
            if self.resolve(func.value) is LOOP or self._is_self_loop(func.value):
                code = self.rules.loop_methods[func.attr]
                self.report(func, code, f"`loop.{func.attr}`: {self._summary(code)}")
        elif resolved in GATHER and self.rules.gather_code and _unbounded_fanout(node):
            code = self.rules.gather_code
            self.report(node, code, f"`{resolved}` over a comprehension: {self._summary(code)}")
        elif resolved in ("builtins.isinstance", "builtins.issubclass") and node.args:
            self.visit(func)
            self.visit(node.args[0])
            for other in node.args[1:]:
                self._quietly(other)
            return
        else:
            value = self._resolve_call(node)
            if isinstance(value, Dynamic) and self.check_dynamic(node, value):
                return
        self.generic_visit(node)

    def _visit_comprehension(self, node: ast.AST) -> None:
        self.generic_visit(node)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension


def _unbounded_fanout(call: ast.Call) -> bool:
    for arg in call.args:
        if isinstance(arg, ast.Starred):
            inner = arg.value
            if isinstance(inner, (ast.GeneratorExp, ast.ListComp, ast.SetComp)):
                return True
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name):
                if inner.func.id == "map":
                    return True
    return False


def resolve_module(
    tree: ast.Module, rules: RuleSet, text: str | None = None, package: str | None = None
) -> list[RawFinding]:
    """All raw findings for one parsed module.

    ``text`` lets the resolver skip functions that cannot match; ``package`` (the dotted
    package the file belongs to) resolves relative imports.
    """
    return Resolver(rules, text, package).run(tree)
