"""Scope-aware name resolution over a stdlib ``ast`` tree, reporting references to banned APIs.

This is the one matcher behind every entry point (CLI, flake8 plugin, catalogue examples).
It follows how Python binds names rather than how they are spelled:

* imports and aliases (``import asyncio as aio``, ``from asyncio import create_task as ct``,
  ``from threading import *``, imports inside functions), and plain re-assignment of them;
* scopes: function bodies are resolved after the enclosing scope has run (as pyflakes does),
  a name bound anywhere in a function is local there, class bodies do not leak into methods,
  and a user's own ``def create_task`` or a parameter called ``asyncio`` shadows the import;
* flow: a name bound to a banned target in any branch (``try``/``except ImportError``
  fallbacks, version gates) stays banned after the branches; comprehensions have their own
  scope; a ``global`` bound in any function is seen by every function;
* receivers: ``loop.create_task`` is flagged only when ``loop`` is traced to
  ``asyncio.get_running_loop()`` and friends (also through ``or``, conditional expressions,
  the walrus, the loop policy, functions annotated to return a loop) or an
  ``AbstractEventLoop`` annotation, in the same function or through ``self.<attr>`` assigned
  or annotated in the class or a base class of the same module (closures and lambdas in
  methods included); a bound method (``submit = loop.create_task``) is a banned name;
* classes deriving from a banned class, and every instantiation of them in the file, also
  when the class is chosen at run time (``cls = A if fast else B``);
* dynamic lookups (``getattr``, ``importlib.import_module``, ``__import__``, ``sys.modules``
  and ``sys.modules.get``, ``vars()``/``__dict__``) with their names folded from constants
  (``+``, ``%``, ``str.format``, ``str.join``), reported under the dynamic-evasion rule when
  the rule they evade is enabled.

References that start nothing are not reported: ``if TYPE_CHECKING:`` blocks, annotations,
the class argument of ``isinstance``/``issubclass``, ``TypeVar`` bounds, ``cast`` types,
subscripts of typing generics (``dict[str, threading.Thread]``) and ``x is None`` checks.

Every finding carries its qualified name and kind (see ``findings.KINDS``) as data.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from itertools import accumulate

from .packages import absolute_module
from .patterns import LazyPattern
from .records import Record
from .ruleset import (
    GATHER,
    GETATTR_WORDS,
    LOOKUP_WORDS,
    LOOP_FACTORIES,
    LOOP_QUALNAME,
    LOOP_TYPES,
    RuleSet,
    prefilter_text,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Exports", "RawFinding", "SubclassIndex", "resolve_module"]

Exports = dict[str, list[str]]
"""Module-level classes deriving from a banned class: name -> [code, base, name, *via]."""
SubclassIndex = dict[str, Exports]
"""The project's exports by dotted module name, for resolving imports across files."""


class RawFinding(Record, frozen=True):
    """A finding before suppressions: byte-offset column as ``ast`` gives it."""

    line: int
    col: int
    end_line: int
    end_col: int
    code: str
    message: str
    qualname: str = ""
    kind: str = ""
    evades: str = ""


class _Local:
    """A name bound to something we do not track (a def, a plain value, a parameter)."""

    def __repr__(self) -> str:
        return "LOCAL"


class _Loop:
    """A name or attribute traced to an event loop."""

    def __repr__(self) -> str:
        return "LOOP"


class _Marker:
    """A value the resolver tracks only to reach a loop: a loop policy, a loop factory."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LOCAL = _Local()
LOOP = _Loop()
POLICY = _Marker("POLICY")  # asyncio.get_event_loop_policy(): its get/new_event_loop give loops
LOOP_FACTORY = _Marker("LOOP_FACTORY")  # a function annotated to return an event loop


class Dynamic(Record, frozen=True):
    """A module or attribute reached through a dynamic lookup."""

    qualname: str


class Subclass(Record, frozen=True):
    """A class defined in this file that derives from a banned class (through ``via``)."""

    code: str
    base: str
    name: str = ""
    via: tuple[str, ...] = ()


Value = str | Dynamic | Subclass | _Local | _Loop | _Marker
_BUILTINS = {"getattr": "builtins.getattr", "__import__": "builtins.__import__"}
_BUILTINS.update({n: f"builtins.{n}" for n in ("vars", "isinstance", "issubclass", "map")})
_IMPORTERS = frozenset({"importlib.import_module", "builtins.__import__"})
_POLICIES = frozenset(
    f"asyncio.{where}{name}"
    for where in ("", "events.")
    for name in ("get_event_loop_policy", "DefaultEventLoopPolicy")
)
_MP_CONTEXTS = frozenset({"multiprocessing.get_context", "multiprocessing.context.get_context"})
_TYPEVARS = frozenset(
    f"{m}.{n}" for m in ("typing", "typing_extensions") for n in ("TypeVar", "NewType")
)
_CASTS = frozenset({"typing.cast", "typing_extensions.cast"})
_TYPING_MODULES = ("typing.", "typing_extensions.", "collections.abc.")
_BUILTIN_GENERICS = frozenset({"dict", "list", "set", "frozenset", "tuple", "type"})
_PROPERTIES = frozenset({"property", "cached_property", "functools.cached_property"})
# call_soon_threadsafe callbacks that only wake the loop up (see CRL203's docs)
_WAKEUPS = frozenset({"set", "stop", "cancel", "set_result", "set_exception"})
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_NEWLINE = LazyPattern("\r\n?|\n")  # line ends as the tokenizer counts them
_SAFE_PERCENT = LazyPattern(r"%(?![sdr%])")
_SAFE_FORMAT = LazyPattern(r"(?:[^{}]|\{\d*\})*")


@lru_cache(maxsize=64)
def _alias_pattern(names: frozenset[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, names))) + r")\b")


def _line_starts(text: str) -> list[int]:
    """The offset each line starts at, lines counted as ``ast`` counts them (only \\n,
    \\r\\n and \\r end one); summed in C when the text holds no \\r."""
    if "\r" in text:
        return [0, *(m.end() for m in _NEWLINE.finditer(text))]
    starts = list(accumulate(map((1).__add__, map(len, text.split("\n"))), initial=0))
    starts.pop()  # the offset past the end
    return starts


def _word_lines(text: str, words: Iterable[str], line_starts: list[int]) -> list[int]:
    """Sorted 1-based numbers of the lines where any of ``words`` occurs as a whole word.

    ``str.find`` per word beats one regex alternation scanned at every position, and line
    numbers come from the line starts the tokenizer's way (``\r\n``, ``\r``, ``\n``)."""
    lines: set[int] = set()
    size = len(text)
    for word in words:
        n = len(word)
        i = text.find(word)
        while i >= 0:
            before = text[i - 1] if i else " "
            after = text[i + n] if i + n < size else " "
            if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
                lines.add(bisect_right(line_starts, i))
            i = text.find(word, i + n)
    return sorted(lines)


def _statement_walk(node: ast.AST) -> Iterator[ast.AST]:
    """What is not an expression under ``node`` (statements, handlers, match cases,
    arguments...), in source order: ``loop = ...`` inside an ``if`` comes before the
    ``self.loop = loop`` that follows the ``if``."""
    todo = [node]
    while todo:
        node = todo.pop()
        yield node
        children = [c for c in _child_nodes(node) if not isinstance(c, ast.expr)]
        todo.extend(reversed(children))


class _MethodLocals:
    """The names a method binds itself: its parameters and the names stored in its own
    scope (a nested function's are its own, so they do not make a module-level name read
    as local here). Walked on first use: most methods never need it."""

    __slots__ = ("names", "node", "walrus")

    def __init__(self, node: ast.FunctionDef | ast.AsyncFunctionDef, walrus: bool) -> None:
        self.node = node
        self.walrus = walrus
        self.names: set[str] | None = None

    def __contains__(self, name: str) -> bool:
        if self.names is None:
            self.names = _function_locals(self.node, self.walrus)
        return name in self.names


class Scope:
    __slots__ = (
        "_locals",
        "bases",
        "bindings",
        "class_loops",
        "globals",
        "kind",
        "node",
        "parent",
        "walrus",
    )

    def __init__(self, kind: str, node: ast.AST | None, parent: Scope | None) -> None:
        self.kind = kind  # module | class | function | comprehension
        self.node = node
        self.parent = parent
        self.bindings: dict[str, Value] = {}
        self.globals: set[str] = set()
        self.class_loops: frozenset[str] | None = None  # searched on first use
        self.bases: list[Scope] = []  # class scopes of same-module base classes
        self._locals: set[str] | None = None
        self.walrus = True  # False when the file's text holds no ``:=`` (see _function_locals)

    def binds_later(self, name: str) -> bool:
        """True if this function binds ``name`` anywhere (so it is local, even before binding)."""
        if self.kind != "function" or self.node is None:
            return False
        if self._locals is None:
            self._locals = _function_locals(self.node, self.walrus)
        return name in self._locals

    def binds(self, name: str) -> bool:
        return name in self.bindings or self.binds_later(name)


def _function_locals(fn: ast.AST, walrus: bool = True) -> set[str]:
    """Names ``fn`` binds. Without ``walrus`` (the file's text holds no ``:=``) only
    statements and their targets can bind, so expressions are not walked at all."""
    names: set[str] = set()
    declared: set[str] = set()
    args = getattr(fn, "args", None)
    if isinstance(args, ast.arguments):
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None:
                names.add(a.arg)
    body = getattr(fn, "body", [])
    stack: list[ast.AST] = list(body) if isinstance(body, list) else [body]
    children = _child_nodes if walrus else _binding_children
    while stack:
        node = stack.pop()
        if isinstance(node, _NESTED):
            if not isinstance(node, ast.Lambda):
                names.add(node.name)
            continue
        if isinstance(node, _COMPREHENSIONS):
            # only a walrus inside a comprehension binds in the function
            stack.extend(n for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
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
        stack.extend(children(node))
    return names - declared


# Fields that never hold a node worth visiting: names, flags, and ``ctx`` (Load/Store/Del
# markers, which ``ast.iter_child_nodes`` yields but no visitor reads).
_SCALAR_FIELDS = frozenset(
    {"ctx", "id", "attr", "arg", "kind", "type_comment", "is_async", "level", "module"}
    | {"conversion", "asname", "lineno", "col_offset", "end_lineno", "end_col_offset"}
)
_FIELDS: dict[type, tuple[str, ...]] = {ast.Constant: ()}
# where a name can be bound outside an expression: statement targets (a walrus is the only
# binding an expression can make)
_TARGET_FIELDS = frozenset({"targets", "target", "optional_vars", "name"})
_BINDING_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _fields_of(cls: type) -> tuple[str, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = tuple(f for f in cls._fields if f not in _SCALAR_FIELDS)  # type: ignore[attr-defined]
    return fields


def _child_nodes(node: ast.AST) -> list[ast.AST]:
    """``ast.iter_child_nodes`` in the same order, without its generators and without the
    ``ctx`` markers."""
    out: list[ast.AST] = []
    for name in _fields_of(type(node)):
        value = getattr(node, name, None)
        if isinstance(value, list):
            out.extend(item for item in value if isinstance(item, ast.AST))
        elif isinstance(value, ast.AST):
            out.append(value)
    return out


def _binding_children(node: ast.AST) -> list[ast.AST]:
    """The children of ``node`` that can bind a name when no walrus exists: nested
    statements, handlers, match cases and patterns, with-items, and target expressions;
    never an expression that only computes a value."""
    if isinstance(node, ast.expr):
        return _child_nodes(node)  # inside a target: walk it whole (it is small)
    cls = type(node)
    plan = _BINDING_FIELDS.get(cls)
    if plan is None:
        plan = _BINDING_FIELDS[cls] = tuple((f, f in _TARGET_FIELDS) for f in _fields_of(cls))
    out: list[ast.AST] = []
    for name, target in plan:
        value = getattr(node, name, None)
        items = value if isinstance(value, list) else (value,)
        for item in items:
            if isinstance(item, ast.expr):
                if target:
                    out.append(item)
            elif isinstance(item, ast.AST):
                out.append(item)
    return out


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_CONSTANT_ARGS = (str, int, float)


def _const_args(node: ast.AST) -> tuple[object, ...] | None:
    """Constant operands of ``%``/``format``: one constant or a tuple of them."""
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    values: list[object] = []
    for item in items:
        text = _const_str(item)
        if text is not None:
            values.append(text)
        elif isinstance(item, ast.Constant) and isinstance(item.value, _CONSTANT_ARGS):
            values.append(item.value)
        else:
            return None
    return tuple(values)


def _const_str(node: ast.AST | None) -> str | None:
    """A string known at parse time: a literal, a concatenation of literals, a bare f-string,
    ``"x_%s" % "y"``, ``"{}_y".format("x")``, ``"_".join(["x", "y"])``.

    Only ``%s``/``%d``/``%r`` and bare ``{}`` placeholders are folded, so a width such as
    ``%999999999s`` in a file can never make the linter build a huge string.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp):
        left = _const_str(node.left)
        if left is None:
            return None
        if isinstance(node.op, ast.Add):
            right = _const_str(node.right)
            return left + right if right is not None else None
        if isinstance(node.op, ast.Mod) and not _SAFE_PERCENT.search(left):
            args = _const_args(node.right)
            if args is not None:
                try:
                    return left % args
                except (TypeError, ValueError, OverflowError):  # "%d" % 1e999
                    return None
        return None
    if isinstance(node, ast.JoinedStr):
        parts = [_const_str(v) for v in node.values]
        if all(p is not None for p in parts):
            return "".join(p for p in parts if p is not None)
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
        base = _const_str(node.func.value)
        if base is None:
            return None
        if node.func.attr == "format" and _SAFE_FORMAT.fullmatch(base):
            args = _const_args(ast.Tuple(elts=node.args)) if node.args else ()
            if args is not None:
                try:
                    return base.format(*args)
                except (IndexError, ValueError, KeyError):
                    return None
        if node.func.attr == "join" and len(node.args) == 1:
            seq = node.args[0]
            if isinstance(seq, (ast.List, ast.Tuple)):
                parts = [_const_str(e) for e in seq.elts]
                if all(p is not None for p in parts):
                    return base.join(p for p in parts if p is not None)
    return None


def _import_text(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    """The import as written, for messages: ``from threading import Thread as T``."""
    name = alias.name + (f" as {alias.asname}" if alias.asname else "")
    if isinstance(node, ast.Import):
        return f"import {name}"
    return f"from {'.' * node.level}{node.module or ''} import {name}"


def _fanout_form(call: ast.Call) -> str:
    for arg in call.args:
        if isinstance(arg, ast.Starred):
            inner = arg.value
            if isinstance(inner, ast.GeneratorExp):
                return "*(... for ...)"
            if isinstance(inner, ast.ListComp):
                return "*[... for ...]"
            if isinstance(inner, ast.SetComp):
                return "*{... for ...}"
            return "*map(...)"
    return "*..."


class Resolver:
    """Walks one module and collects raw findings for the enabled rules."""

    def __init__(
        self,
        rules: RuleSet,
        text: str | None = None,
        package: str | None = None,
        index: SubclassIndex | None = None,
    ) -> None:
        self.rules = rules
        self.package = package
        self.index = index or {}
        self.text = text
        # without a ``:=`` in the text only statements bind names in a function (the binding
        # walk then skips expressions); with no text, walk everything
        self.walrus = text is None or ":=" in text
        self.aliases: set[str] = set()
        self.line_starts: list[int] = []
        self.modules: set[str] = set()  # names bound to a watched module (for getattr)
        self.dynamic_names: set[str] = set()  # names bound to a dynamic lookup's result
        self.member_lines: list[int] = []
        self.lookup_lines: list[int] = []  # import_module, __import__, sys.modules
        self.getattr_lines: list[int] = []  # getattr, vars, __dict__: need a module name
        # the per-function skip compares spellings as the parser does: identifiers are NFKC,
        # so a non-ASCII text is searched in its NFKC form (``words``), whose lines are the
        # text's lines; string pieces are searched in the text itself
        self.words = text
        self.word_starts: list[int] = []
        self.skippable = False
        if text is not None:
            self.line_starts = _line_starts(text)
            words = text if text.isascii() else prefilter_text(text)
            starts = self.line_starts if words is text else _line_starts(words)
            if len(starts) == len(self.line_starts):
                self.skippable, self.words, self.word_starts = True, words, starts
                extra = [n for e in self.index.values() for n in e]  # w.Poller()
                self.member_lines = _word_lines(words, [*rules.member_names, *extra], starts)
                if rules.dynamic_codes:
                    self.lookup_lines = _word_lines(words, LOOKUP_WORDS, starts)
                    self.getattr_lines = _word_lines(words, GETATTR_WORDS, starts)
        self.findings: list[RawFinding] = []
        self.seen: set[tuple[int, int, str]] = set()
        self.scope = Scope("module", None, None)
        self.module = self.scope
        self.tracked: set[str] = set(_BUILTINS)
        self.quiet = 0  # > 0 inside TYPE_CHECKING blocks and annotations
        self.branch = 0  # > 0 inside a conditional branch of the current scope
        self.deferred: list[tuple[ast.AST, Scope, int]] = []
        self.classes: dict[str, Scope] = {}  # module-level class name -> its scope
        self.global_rebound = False  # a function bound a banned value into the module

    # -- driving ---------------------------------------------------------------------------
    def run(self, tree: ast.Module) -> list[RawFinding]:
        self.visit_body(tree.body)
        functions = list(self.deferred)
        self._drain()
        if self.global_rebound:
            # a function bound a banned name through ``global``: functions resolved before it
            # did not see that binding, so resolve them once more against the final module
            self.global_rebound = False
            self.deferred = functions
            self._drain()
        return self.findings

    def exports(self) -> Exports:
        """This module's classes that derive from a banned class, for other modules."""
        return {
            name: [value.code, value.base, value.name, *value.via]
            for name, value in self.module.bindings.items()
            if isinstance(value, Subclass)
        }

    def _indexed(self, qualname: str) -> Subclass | None:
        """A subclass another module of the project defines, reached by its dotted name."""
        module, _, name = qualname.rpartition(".")
        entry = self.index.get(module, {}).get(name) if self.index else None
        if entry is None or len(entry) < 3:
            return None
        return Subclass(entry[0], entry[1], entry[2], tuple(entry[3:]))

    def _drain(self) -> None:
        while self.deferred:
            node, parent, quiet = self.deferred.pop(0)
            if self.text is None or self._may_contain_findings(node):
                self._visit_function_body(node, parent, quiet)

    def _may_contain_findings(self, node: ast.AST) -> bool:
        """A function whose lines name no banned member and no tracked alias, and hold no
        dynamic lookup whose folded strings could spell a target (the prefilter's test,
        ``RuleSet.may_spell_tail``, on the function's lines: a folded string is one
        expression, so all its pieces are there), cannot report anything, and its local
        bindings are invisible outside it (``global`` bindings are names it writes, so they
        pass the alias test or a member word), so it can be skipped."""
        if self.text is None or not self.skippable:
            return True
        first = node.lineno  # type: ignore[attr-defined]
        last = getattr(node, "end_lineno", None) or first
        if _any_between(self.member_lines, first, last):
            return True
        words = self.words
        assert words is not None
        wstarts = self.word_starts
        start = wstarts[first - 1] if first - 1 < len(wstarts) else len(words)
        end = wstarts[last] if last < len(wstarts) else len(words)
        if self.aliases:
            if _alias_pattern(frozenset(self.aliases)).search(words, start, end):
                return True
        # a dynamic lookup may build the banned name from pieces: import_module, __import__
        # and sys.modules need no module name; getattr, vars and __dict__ need one in scope,
        # and so does an attribute or subscript of a name bound to a lookup's result
        window = words, start, end
        if not (
            _any_between(self.lookup_lines, first, last)
            or (
                _any_between(self.getattr_lines, first, last)
                and _alias_pattern(frozenset(self.modules) | self.rules.modules).search(*window)
            )
            or (
                self.dynamic_names and _alias_pattern(frozenset(self.dynamic_names)).search(*window)
            )
        ):
            return False
        # ... and then a folded string here spells the tail of a target (or a member word,
        # found above, ends the name); string values are the text's own, not NFKC
        starts = self.line_starts
        raw_start = starts[first - 1] if first - 1 < len(starts) else len(self.text)
        raw_end = starts[last] if last < len(starts) else len(self.text)
        window = self.text, raw_start, raw_end
        pieces = self.rules.pieces(*window)
        return pieces is not None and self.rules.may_spell_tail(pieces)

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
        visit = self.visit
        for name in _fields_of(type(node)):
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        visit(item)
            elif isinstance(value, ast.AST):
                visit(value)

    def visit_body(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    def _branches(self, *bodies: list[ast.stmt]) -> None:
        """Bodies that may or may not run: a banned binding made before survives them."""
        self.branch += 1
        for body in bodies:
            self.visit_body(body)
        self.branch -= 1

    # -- reporting -------------------------------------------------------------------------
    def report(
        self,
        node: ast.AST,
        code: str,
        message: str,
        qualname: str = "",
        kind: str = "",
        evades: str = "",
    ) -> None:
        if self.quiet:
            return
        line, col = node.lineno, node.col_offset  # type: ignore[attr-defined]
        if (line, col, code) in self.seen:
            return
        self.seen.add((line, col, code))
        end_line = getattr(node, "end_lineno", None) or line
        end_col = getattr(node, "end_col_offset", None) or col
        self.findings.append(
            RawFinding(line, col, end_line, end_col, code, message, qualname, kind, evades)
        )

    def _summary(self, code: str) -> str:
        rule = self.rules.catalogue.get(code)
        return rule.summary if rule else code

    def _rule_name(self, code: str) -> str:
        rule = self.rules.catalogue.get(code)
        return rule.name if rule else code

    @staticmethod
    def _display(qualname: str) -> str:
        if qualname.startswith(LOOP_QUALNAME + "."):
            return "loop." + qualname[len(LOOP_QUALNAME) + 1 :]
        return qualname

    def report_call(self, node: ast.AST, qualname: str, code: str) -> None:
        shown = self._display(qualname)
        if qualname == f"{LOOP_QUALNAME}.run_in_executor":
            message = (
                f"`{shown}` runs work on the loop's executor (it creates none), "
                "outside the governed runtime"
            )
        else:
            message = f"`{shown}`: {self._summary(code)}"
        self.report(node, code, message, qualname, "call")

    def report_reference(self, node: ast.AST, qualname: str, code: str) -> None:
        message = f"reference to `{self._display(qualname)}` (banned by {self._rule_name(code)})"
        self.report(node, code, message, qualname, "reference")

    def report_import(
        self, node: ast.Import | ast.ImportFrom, alias: ast.alias, qualname: str, code: str
    ) -> None:
        message = f"`{_import_text(node, alias)}` imports `{qualname}`"
        self.report(alias, code, message, qualname, "import")

    # -- binding and lookup ----------------------------------------------------------------
    def _sticky(self, value: Value | None) -> bool:
        """Values a conditional rebinding must not erase: banned names and their subclasses."""
        if isinstance(value, Subclass):
            return True
        return isinstance(value, str) and (self.rules.lookup(value) is not None or value in GATHER)

    def bind(self, name: str, value: Value) -> None:
        scope = self.scope
        if name in scope.globals:
            # a function may never run: its global writes add to the module, never erase it
            scope = self.module
            old = scope.bindings.get(name)
            if value is LOCAL and old is not None:
                return
            if value is not LOCAL and (old is None or old is LOCAL):
                self.global_rebound = True
        elif self.branch and value is LOCAL:
            old = scope.bindings.get(name)
            if old is not None and old is not LOCAL:
                return  # `except ImportError: Thread = None` keeps the real import
        scope.bindings[name] = value
        if value is not LOCAL:
            self.tracked.add(name)
            if isinstance(value, str) and value.split(".", 1)[0] in self.rules.modules:
                self.modules.add(name)
            elif isinstance(value, Dynamic):  # a module or attribute looked up dynamically
                self.modules.add(name)
                self.dynamic_names.add(name)
                if self.rules.banned_anywhere(value.qualname):
                    self.aliases.add(name)  # launch = getattr(asyncio, "create_" + "task")
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
            return self._resolve_attribute(node)
        if isinstance(node, ast.Call):
            return self._resolve_call(node)
        if isinstance(node, ast.Subscript):
            return self._resolve_subscript(node)
        if isinstance(node, ast.IfExp):
            return self._either([node.body, node.orelse])
        if isinstance(node, ast.BoolOp):
            return self._either(node.values)
        if isinstance(node, ast.NamedExpr):
            return self.resolve(node.value)
        return None

    def _either(self, options: list[ast.expr]) -> Value | None:
        """``a if c else b``, ``a or b``: whichever option is a loop or banned (either may be
        the value at run time); otherwise nothing we track."""
        for option in options:
            value = self.resolve(option)
            if value is LOOP or self._sticky(value):
                return value
        return None

    def _resolve_attribute(self, node: ast.Attribute) -> Value | None:
        base = self.resolve(node.value)
        if isinstance(base, str):
            return f"{base}.{node.attr}"
        if node.attr in self.rules.method_names and (
            base is LOOP or (base in (None, LOCAL) and self._is_self_loop(node.value))
        ):
            return f"{LOOP_QUALNAME}.{node.attr}"
        if isinstance(base, Dynamic):
            if node.attr == "__dict__":
                return base
            return Dynamic(f"{base.qualname}.{node.attr}")
        if base is POLICY and node.attr in ("get_event_loop", "new_event_loop"):
            return LOOP_FACTORY
        return None

    def _resolve_call(self, node: ast.Call) -> Value | None:
        func = self.resolve(node.func)
        if func is LOOP_FACTORY:
            return LOOP
        if func is None and isinstance(node.func, ast.Attribute):
            owner = self._self_class(node.func.value)
            if owner is not None and owner.bindings.get(node.func.attr) is LOOP_FACTORY:
                return LOOP  # self.get_loop() on a method annotated to return a loop
        if not isinstance(func, str):
            return None
        if func in LOOP_FACTORIES:
            return LOOP
        if func in _POLICIES:
            return POLICY
        if func in _MP_CONTEXTS:
            return "multiprocessing"  # a context has the module's Process, Pool...
        if func == "sys.modules.get" and node.args:
            key = _const_str(node.args[0])
            return Dynamic(key) if key is not None else None
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

    # -- methods and their class -----------------------------------------------------------
    def _self_class(self, node: ast.AST) -> Scope | None:
        """The class scope when ``node`` is the ``self`` of an enclosing method, seen from the
        method itself or from a closure, lambda or comprehension inside it."""
        if not isinstance(node, ast.Name):
            return None
        name = node.id
        scope: Scope | None = self.scope
        while scope is not None and scope.kind in ("function", "comprehension"):
            parent = scope.parent
            if scope.kind == "function" and parent is not None and parent.kind == "class":
                return parent if _first_parameter(scope.node) == name else None
            if scope.binds(name):
                return None  # rebound (a lambda's own ``self``) before reaching the method
            scope = parent
        return None

    def _is_self_loop(self, node: ast.AST) -> bool:
        """``self.<attr>`` where the class (or a same-module base) holds an event loop in
        ``<attr>``. The class is searched only when such a receiver is used."""
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            return False
        owner = self._self_class(node.value)
        return owner is not None and node.attr in self._class_loops(owner)

    def _class_loops(self, owner: Scope) -> frozenset[str]:
        if owner.class_loops is None:
            owner.class_loops = frozenset()  # guards the search against re-entry
            found = set(self._loop_attributes(owner))
            for base in owner.bases:
                found |= self._class_loops(base)
            owner.class_loops = frozenset(found)
        return owner.class_loops

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
            if code is not None and value not in self.rules.call_only:
                self.report_reference(node, value, code)
                return True
        elif isinstance(value, Dynamic):
            return self.check_dynamic(node, value)
        return False

    def check_dynamic(self, node: ast.AST, value: Dynamic, *, called: bool = False) -> bool:
        """Report a dynamic lookup of a banned name; a ``calls:``-only target (``asyncio.Task``)
        only where the looked-up value is called (``getattr(asyncio, "Task")(coro)``)."""
        codes = self.rules.dynamic_codes
        if not codes:
            return False
        evaded = self.rules.banned_anywhere(value.qualname)
        if evaded is None or evaded not in self.rules.enabled:
            return False  # the evaded rule is off: reaching it dynamically is allowed too
        if value.qualname in self.rules.call_only and not called:
            return False
        message = f"`{value.qualname}` reached through a dynamic lookup, evading {evaded}"
        for code in codes:
            self.report(node, code, message, value.qualname, "dynamic", evaded)
        return True

    # -- statements ------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.bind(alias.asname, alias.name)
                code = self.rules.lookup(alias.name)
                if code is not None and alias.name not in self.rules.call_only:
                    self.report_import(node, alias, alias.name, code)
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
            self.bind(alias.asname or alias.name, self._indexed(qualname) or qualname)
            code = self.rules.lookup(qualname)
            if code is not None and qualname not in self.rules.call_only:
                self.report_import(node, alias, qualname, code)

    def _absolute_module(self, node: ast.ImportFrom) -> str | None:
        """``from .tasks import x`` inside package ``asyncio`` imports from ``asyncio.tasks``."""
        return absolute_module(node.level, node.module, self.package)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        test = self.resolve(node.test)
        is_tc = test == "typing.TYPE_CHECKING" or (
            isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        )
        if is_tc:
            # the body never runs, so the else branch is what runs: it binds unconditionally
            self.quiet += 1
            self._branches(node.body)
            self.quiet -= 1
            self.visit_body(node.orelse)
        else:
            self._branches(node.body, node.orelse)

    def visit_Try(self, node: ast.Try) -> None:
        self.visit_body(node.body)
        self.branch += 1
        for handler in node.handlers:
            self.visit(handler)
        self.visit_body(node.orelse)
        self.branch -= 1
        self.visit_body(node.finalbody)

    visit_TryStar = visit_Try

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self._branches(node.body, node.orelse)

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        self.branch += 1
        for case in node.cases:
            self.visit(case.pattern)
            if case.guard is not None:
                self.visit(case.guard)
            self.visit_body(case.body)
        self.branch -= 1

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
        value = self._value_of(node.value)
        scope = self.scope
        while scope.kind == "comprehension" and scope.parent is not None:
            scope = scope.parent  # a walrus in a comprehension binds in the enclosing scope
        outer, self.scope = self.scope, scope
        self.bind(node.target.id, value)
        self.scope = outer

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
        self._branches(node.body, node.orelse)

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
        value: Value = LOCAL
        if self._is_loop_annotation(node.returns):
            decorators = {self.resolve(d) for d in node.decorator_list}
            names = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
            is_property = bool((decorators | names) & _PROPERTIES)
            value = LOOP if self.scope.kind == "class" and is_property else LOOP_FACTORY
        self.bind(node.name, value)
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
        outer, outer_quiet, outer_branch = self.scope, self.quiet, self.branch
        self.scope, self.quiet, self.branch = Scope("function", node, parent), quiet, 0
        self.scope.walrus = self.walrus
        args = node.args  # type: ignore[attr-defined]
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                self.bind(arg.arg, LOOP if self._is_loop_annotation(arg.annotation) else LOCAL)
        body = node.body  # type: ignore[attr-defined]
        if isinstance(body, list):
            self.visit_body(body)
        else:
            self.visit(body)
        self.scope, self.quiet, self.branch = outer, outer_quiet, outer_branch

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        value: Value = LOCAL
        bases: list[Scope] = []
        for base in node.bases:
            resolved = self.resolve(base)
            if self.index and isinstance(resolved, str):
                resolved = self._indexed(resolved) or resolved
            code = self.rules.lookup(resolved) if isinstance(resolved, str) else None
            if code is not None and code in self.rules.subclass_codes:
                assert isinstance(resolved, str)
                value = Subclass(code, resolved, node.name)
                self.report(
                    base, code, f"`{node.name}` subclasses `{resolved}`", resolved, "subclass"
                )
                continue
            self.visit(base)
            if isinstance(resolved, Subclass):
                value = Subclass(
                    resolved.code, resolved.base, node.name, (resolved.name, *resolved.via)
                )
            if isinstance(base, ast.Name) and base.id in self.classes:
                bases.append(self.classes[base.id])
        for keyword in node.keywords:
            self.visit(keyword.value)
        outer, outer_branch = self.scope, self.branch
        self.scope, self.branch = Scope("class", node, outer), 0
        self.scope.bases = bases
        self.visit_body(node.body)
        if outer is self.module:
            self.classes[node.name] = self.scope
        self.scope, self.branch = outer, outer_branch
        self.bind(node.name, value)

    def _loop_attributes(self, owner: Scope) -> frozenset[str]:
        """Attributes holding an event loop: class-level annotations and dataclass fields,
        properties annotated to return one, and ``self.<attr> = <loop>`` in any method, where
        a name on the right is read in that method (its parameters and locals), not here."""
        node = owner.node
        assert isinstance(node, ast.ClassDef)
        found = {name for name, value in owner.bindings.items() if value is LOOP}
        copies: list[tuple[str, str]] = []
        for stmt in node.body:
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            # assignments are statements, so the walk skips expressions; the names the
            # method binds are walked only if a right-hand name needs them
            assigns = [
                sub for sub in _statement_walk(stmt) if isinstance(sub, (ast.Assign, ast.AnnAssign))
            ]
            local = _MethodLocals(stmt, self.walrus)
            args = stmt.args
            if not assigns:
                continue
            loops = {
                a.arg
                for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)
                if a.annotation is not None and self._is_loop_annotation(a.annotation)
            }
            for sub in assigns:  # in source order: `loop = ...; self.loop = loop`
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                value = sub.value
                annotated = isinstance(sub, ast.AnnAssign) and self._is_loop_annotation(
                    sub.annotation
                )
                holds = annotated or (value is not None and self._holds_loop(value, loops, local))
                for target in targets:
                    if isinstance(target, ast.Name) and holds:
                        loops.add(target.id)
                    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                        if holds:
                            found.add(target.attr)
                        elif isinstance(value, ast.Attribute):
                            copies.append((target.attr, value.attr))  # self.a = self.b
        for _ in range(2):
            found.update(a for a, b in copies if b in found)
        return frozenset(found)

    def _holds_loop(self, value: ast.AST, loops: set[str], local: _MethodLocals) -> bool:
        if isinstance(value, ast.Name):
            if value.id in local:
                return value.id in loops
            return self.module.bindings.get(value.id) is LOOP
        if isinstance(value, (ast.BoolOp, ast.IfExp)):
            options = value.values if isinstance(value, ast.BoolOp) else [value.body, value.orelse]
            return any(self._holds_loop(v, loops, local) for v in options)
        if isinstance(value, ast.NamedExpr):
            return self._holds_loop(value.value, loops, local)
        return self.resolve(value) is LOOP

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
        if self._is_generic(node.value):
            self.visit(node.value)
            self._quietly(node.slice)  # dict[str, threading.Thread] names a type
            return
        self.generic_visit(node)

    def _is_generic(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name) and node.id in _BUILTIN_GENERICS:
            return self.lookup(node.id) is None
        value = self.resolve(node)
        return isinstance(value, str) and value.startswith(_TYPING_MODULES)

    def visit_Compare(self, node: ast.Compare) -> None:
        if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops) and all(
            isinstance(c, ast.Constant) and c.value is None for c in node.comparators
        ):
            self._quietly(node.left)  # `Executor is not None` checks availability
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        resolved = self.resolve(func)
        if self.index and isinstance(resolved, str):
            resolved = self._indexed(resolved) or resolved  # workers.Poller()
        if isinstance(resolved, Dynamic) and resolved.qualname in self.rules.call_only:
            if self.check_dynamic(node, resolved, called=True):
                self.generic_visit(node)  # the lookup alone is no finding: no repeat
                return
        if isinstance(resolved, Subclass):
            via = "".join(f" via `{name}`" for name in resolved.via)
            self.report(
                node,
                resolved.code,
                f"instance of `{resolved.name}`, a subclass of `{resolved.base}`{via}: "
                f"{self._summary(resolved.code)}",
                resolved.base,
                "instantiation",
            )
        elif isinstance(resolved, str):
            code = self.rules.lookup(resolved)
            if code is not None:
                if not self._is_wakeup(resolved, node):
                    self.report_call(func, resolved, code)
                if isinstance(func, ast.Attribute):
                    self.visit(func.value)
                self._visit_arguments(node)
                return
            if resolved in GATHER and self.rules.gather_codes and _unbounded_fanout(node):
                form = _fanout_form(node)
                for code in self.rules.gather_codes:
                    message = f"`{resolved}` over `{form}`: {self._summary(code)}"
                    self.report(node, code, message, resolved, "call")
            elif resolved in ("builtins.isinstance", "builtins.issubclass") and node.args:
                self.visit(func)
                self.visit(node.args[0])
                for other in node.args[1:]:
                    self._quietly(other)
                return
            elif resolved in _TYPEVARS or (resolved in _CASTS and node.args):
                # TypeVar("T", bound=Thread) and cast(Thread, x) name types, start nothing
                self.visit(func)
                typevar = resolved in _TYPEVARS
                for i, arg in enumerate(node.args):
                    if typevar or i == 0:
                        self._quietly(arg)
                    else:
                        self.visit(arg)
                for keyword in node.keywords:
                    if typevar:
                        self._quietly(keyword.value)
                    else:
                        self.visit(keyword.value)
                return
        if not isinstance(resolved, Subclass):
            value = self._resolve_call(node)
            if isinstance(value, Dynamic) and self.check_dynamic(node, value):
                return
        self.generic_visit(node)

    def _visit_arguments(self, node: ast.Call) -> None:
        for arg in node.args:
            self.visit(arg)
        for keyword in node.keywords:
            self.visit(keyword.value)

    def _is_wakeup(self, qualname: str, call: ast.Call) -> bool:
        """``loop.call_soon_threadsafe(event.set)`` / ``(loop.stop)`` only wakes the loop up."""
        if qualname != f"{LOOP_QUALNAME}.call_soon_threadsafe" or not call.args:
            return False
        callback = call.args[0]
        return isinstance(callback, ast.Attribute) and callback.attr in _WAKEUPS

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        """Comprehension variables are local to it; the first iterable is evaluated outside."""
        generators = node.generators
        self.visit(generators[0].iter)
        outer = self.scope
        self.scope = Scope("comprehension", node, outer)
        for i, generator in enumerate(generators):
            if i:
                self.visit(generator.iter)
            self._assign(generator.target, LOCAL)
            for condition in generator.ifs:
                self.visit(condition)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self.scope = outer

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension


def _any_between(lines: list[int], first: int, last: int) -> bool:
    i = bisect_left(lines, first)
    return i < len(lines) and lines[i] <= last


def _first_parameter(fn: ast.AST | None) -> str | None:
    args = getattr(fn, "args", None)
    if isinstance(args, ast.arguments):
        positional = [*args.posonlyargs, *args.args]
        if positional:
            return positional[0].arg
    return None


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
    tree: ast.Module,
    rules: RuleSet,
    text: str | None = None,
    package: str | None = None,
    index: SubclassIndex | None = None,
) -> list[RawFinding]:
    """All raw findings for one parsed module.

    ``text`` lets the resolver skip functions that cannot match; ``package`` (the dotted
    package the file belongs to) resolves relative imports; ``index`` holds the subclasses
    of banned classes that the project's other modules define.
    """
    return Resolver(rules, text, package, index).run(tree)
