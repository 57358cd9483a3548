"""``corral fix``: LibCST codemods for the cases where the governed call means the same thing.

Only fire-and-forget statements are rewritten, because only there does nothing depend on the
raw ``Task`` or ``Thread`` object:

* ``asyncio.create_task(f(a, b))``, ``asyncio.ensure_future(f(a))`` and traced
  ``loop.create_task(f(a))`` as statements become ``corral.spawn(f, a, b)``;
* ``threading.Thread(target=f, args=(a,), kwargs={"k": v}).start()`` as a statement becomes
  ``corral.sync.spawn(f, a, k=v)``.

Which call is banned comes from the lint engine's own findings (same resolution of aliases,
shadowing and loop receivers as ``corral check``, same suppressions and allow-lists); LibCST
only locates those calls and rewrites them, keeping formatting and comments. Everything
else is refused with the reason: a kept, awaited or cancelled result, a coroutine object
made elsewhere, daemon threads, Thread subclasses, options with no governed equivalent.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.codemod import Codemod, CodemodCommand, CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import CodeRange, ParentNodeProvider, PositionProvider

from .baseline import Baseline, baseline_path, split
from .engine import check_text
from .findings import Finding, printable
from .fix_triage import (
    FIXABLE,
    REFERENCE,
    SUBCLASS,
    THREAD_CODE,
    Refusal,
    Span,
    banned_name,
    call_span,
    is_subclass_finding,
    needs_codemod,
    reason_for_parent,
)
from .project import Project
from .safeio import MAX_SOURCE_BYTES, inside, read_regular, replace_atomically
from .source import Unreadable, decode

__all__ = ["FileFix", "Refusal", "fix_source", "run_fix"]

RESERVED_KEYWORDS = frozenset({"key"})  # corral.spawn's own option: it cannot pass through


@dataclass
class FileFix:
    path: str
    before: str
    after: str
    fixed: int = 0
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.after != self.before


_EQUAL = cst.AssignEqual(
    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
)


class _Refused(Exception):
    """Raised inside the planner with the reason a call is left alone."""


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _context_reason(parent: cst.CSTNode | None) -> str:
    """Why a call whose result is used is not fire-and-forget (same words as the triage)."""
    if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
        return reason_for_parent("assign")
    if isinstance(parent, cst.AssignTarget):
        return reason_for_parent("assign")
    kinds: tuple[tuple[type[cst.CSTNode] | tuple[type[cst.CSTNode], ...], str], ...] = (
        (cst.Await, "await"),
        (cst.Return, "return"),
        ((cst.Yield, cst.From), "yield"),
        (cst.Arg, "arg"),
        ((cst.Element, cst.DictElement, cst.StarredElement), "collection"),
        (cst.WithItem, "with"),
    )
    if isinstance(parent, cst.Attribute):
        return reason_for_parent("attribute", parent.attr.value)
    for types, kind in kinds:
        if isinstance(parent, types):
            return reason_for_parent(kind)
    return reason_for_parent("expression")


def _plain_args(args: Sequence[cst.Arg], what: str) -> None:
    for arg in args:
        if arg.star == "**":
            raise _Refused(f"`**` keyword arguments to {what} could collide with corral's `key=`")
        if arg.keyword is not None and arg.keyword.value in RESERVED_KEYWORDS:
            raise _Refused(f"keyword `{arg.keyword.value}=` is corral.spawn's own option")


def _first_comma(ws: cst.BaseParenthesizableWhitespace) -> cst.Comma:
    if isinstance(ws, cst.ParenthesizedWhitespace):
        return cst.Comma(whitespace_after=ws)
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _with_commas(args: list[cst.Arg]) -> list[cst.Arg]:
    """Every argument but the last needs a comma; keep a trailing comma if there was one."""
    fixed: list[cst.Arg] = []
    for i, arg in enumerate(args):
        last = i == len(args) - 1
        if not last and not isinstance(arg.comma, cst.Comma):
            arg = arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        fixed.append(arg)
    return fixed


def _call(dotted: str, args: list[cst.Arg], like: cst.Call) -> cst.Call:
    func = cst.parse_expression(dotted)
    return cst.Call(
        func=func,
        args=_with_commas(args),
        whitespace_after_func=like.whitespace_after_func,
        whitespace_before_args=like.whitespace_before_args,
    )


class _FixCommand(CodemodCommand):
    """Plan every rewrite from the engine's findings, then replace the planned nodes."""

    DESCRIPTION = "rewrite fire-and-forget tasks and threads to corral.spawn / corral.sync.spawn"
    METADATA_DEPENDENCIES = (PositionProvider, ParentNodeProvider)

    def __init__(
        self,
        context: CodemodContext,
        path: str,
        findings: Sequence[Finding],
        only: Finding | None = None,
    ) -> None:
        super().__init__(context)
        self.path = path
        self.findings = list(findings)
        self.only = only
        self.fixed = 0
        self.refusals: list[Refusal] = []
        self.references: list[Refusal] = []
        self._tree: cst.Module | None = None

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        self._tree = tree
        calls = _Calls()
        tree.visit(calls)
        by_span: dict[Span, cst.Call] = {}
        for found in calls.found:
            where = self._range(found.func)
            by_span[(where.start.line, where.start.column, where.end.line, where.end.column)] = (
                found
            )
        plan: dict[cst.CSTNode, cst.CSTNode] = {}
        needed: set[str] = set()
        for finding in self.findings:
            if finding.code not in FIXABLE or (self.only is not None and finding != self.only):
                continue
            if is_subclass_finding(finding):
                self.refusals.append(
                    Refusal(self.path, finding.line, finding.col, finding.code, SUBCLASS)
                )
                continue
            call = by_span.get(call_span(finding))
            if call is None:
                self.references.append(
                    Refusal(self.path, finding.line, finding.col, finding.code, REFERENCE)
                )
                continue
            try:
                if finding.code == THREAD_CODE:
                    target, new = self._plan_thread(call, finding)
                    needed.add("corral.sync")
                else:
                    target, new = self._plan_task(call, finding)
                    needed.add("corral")
            except _Refused as why:
                self.refusals.append(
                    Refusal(self.path, finding.line, finding.col, finding.code, str(why))
                )
                continue
            plan[target] = new
            # the visitors' static forms: CodemodCommand gained shortcuts only in libcst 1.9
            RemoveImportsVisitor.remove_unused_import_by_node(self.context, call.func)
            self.fixed += 1
        if not plan:
            return tree
        if "corral.sync" in needed:  # `import corral.sync` also binds `corral`
            needed.discard("corral")
        for module in sorted(needed):
            AddImportsVisitor.add_needed_import(self.context, module)
        return tree.visit(_Replace(plan))

    def transform_module(self, tree: cst.Module) -> cst.Module:
        tree = Codemod.transform_module(self, tree)
        if AddImportsVisitor.CONTEXT_KEY in self.context.scratch:
            tree = self._instantiate_and_run(AddImportsVisitor, tree)
        if RemoveImportsVisitor.CONTEXT_KEY in self.context.scratch:
            tree = self._instantiate_and_run(_RemoveImports, tree)
        return tree

    # -- helpers ---------------------------------------------------------------------
    def _range(self, node: cst.CSTNode) -> CodeRange:
        return self.get_metadata(PositionProvider, node)

    def _parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.get_metadata(ParentNodeProvider, node, None)

    def _statement(self, node: cst.CSTNode) -> cst.Expr:
        """The ``Expr`` statement whose whole value is ``node``, or refuse with the reason."""
        parent = self._parent(node)
        if isinstance(parent, cst.Expr) and parent.value is node:
            return parent
        raise _Refused(_context_reason(parent))

    def _code(self, node: cst.CSTNode) -> str:
        assert self._tree is not None
        return self._tree.code_for_node(node)

    def _no_lost_comments(self, outer: cst.CSTNode, kept: Sequence[cst.CSTNode]) -> None:
        if self._code(outer).count("#") > sum(self._code(n).count("#") for n in kept):
            raise _Refused("a comment inside the call would be lost")

    def _nothing_else_banned(self, inner: cst.CSTNode, finding: Finding) -> None:
        span = self._range(inner)
        for other in self.findings:
            if other is finding:
                continue
            after_start = (other.line, other.col - 1) >= (span.start.line, span.start.column)
            before_end = (other.line, other.col - 1) < (span.end.line, span.end.column)
            if after_start and before_end:
                raise _Refused(f"the argument contains another finding ({other.code})")

    # -- asyncio tasks ---------------------------------------------------------------
    def _plan_task(self, call: cst.Call, finding: Finding) -> tuple[cst.CSTNode, cst.CSTNode]:
        if finding.code == "CRL203":
            name = call.func.attr.value if isinstance(call.func, cst.Attribute) else ""
            if name != "create_task":
                raise _Refused(f"`{banned_name(finding) or name}` has no spawn form")
        self._statement(call)
        if len(call.args) != 1 or call.args[0].keyword is not None or call.args[0].star:
            options = [a.keyword.value for a in call.args if a.keyword is not None]
            if options:
                raise _Refused(f"option `{options[0]}=` has no corral.spawn equivalent")
            raise _Refused("expected exactly one argument, the coroutine call")
        inner = call.args[0].value
        if not isinstance(inner, cst.Call):
            raise _Refused("argument is not a call (a coroutine object made elsewhere)")
        if inner.lpar or inner.rpar:
            raise _Refused("argument is parenthesised")
        _plain_args(inner.args, "the coroutine function")
        self._nothing_else_banned(inner, finding)
        self._no_lost_comments(call, [inner.func, *inner.args])
        first = cst.Arg(inner.func, comma=_first_comma(inner.whitespace_before_args))
        if not inner.args:
            first = cst.Arg(inner.func)
        new = _call("corral.spawn", [first, *inner.args], inner)
        return call, new

    # -- threads ---------------------------------------------------------------------
    def _plan_thread(self, call: cst.Call, finding: Finding) -> tuple[cst.CSTNode, cst.CSTNode]:
        name = banned_name(finding)
        if name != "threading.Thread":
            raise _Refused(f"`{name or _dotted(call.func)}` has no mechanical rewrite")
        parent = self._parent(call)
        if not (isinstance(parent, cst.Attribute) and parent.attr.value == "start"):
            raise _Refused(_context_reason(parent))
        start = self._parent(parent)
        if not (isinstance(start, cst.Call) and start.func is parent):
            raise _Refused("the thread's start method is not called")
        if start.args:
            raise _Refused("start() called with arguments")
        self._statement(start)
        options = {}
        for arg in call.args:
            if arg.keyword is None:
                raise _Refused("positional Thread arguments")
            options[arg.keyword.value] = arg.value
        target = options.pop("target", None)
        if target is None:
            raise _Refused("no target= to run")
        daemon = options.pop("daemon", None)
        if daemon is not None and not (isinstance(daemon, cst.Name) and daemon.value == "False"):
            raise _Refused("daemon thread: it would no longer be abandoned at exit")
        args_node = options.pop("args", None)
        kwargs_node = options.pop("kwargs", None)
        if options:
            raise _Refused(f"option `{sorted(options)[0]}=` has no corral.sync.spawn equivalent")
        new_args: list[cst.Arg] = [cst.Arg(target)]
        kept: list[cst.CSTNode] = [target]
        if args_node is not None:
            new_args += self._positional(args_node, kept)
        if kwargs_node is not None:
            new_args += self._keywords(kwargs_node, kept)
        self._nothing_else_banned(start, finding)
        self._no_lost_comments(start, kept)
        like = cst.Call(func=cst.Name("spawn"))
        return start, _call("corral.sync.spawn", new_args, like)

    def _positional(self, node: cst.BaseExpression, kept: list[cst.CSTNode]) -> list[cst.Arg]:
        if isinstance(node, (cst.Tuple, cst.List)):
            out = []
            for element in node.elements:
                kept.append(element.value)
                if isinstance(element, cst.StarredElement):
                    out.append(cst.Arg(element.value, star="*"))
                else:
                    out.append(cst.Arg(element.value))
            return out
        kept.append(node)
        return [cst.Arg(node, star="*")]

    def _keywords(self, node: cst.BaseExpression, kept: list[cst.CSTNode]) -> list[cst.Arg]:
        if not isinstance(node, cst.Dict):
            raise _Refused("kwargs= is not a dict literal (its keys could collide with `key=`)")
        out = []
        for element in node.elements:
            if not isinstance(element, cst.DictElement):
                raise _Refused("kwargs= unpacks another mapping")
            key = element.key
            value = key.evaluated_value if isinstance(key, cst.SimpleString) else None
            if not isinstance(value, str) or not value.isidentifier():
                raise _Refused("kwargs= has a key that is not a plain identifier string")
            if value in RESERVED_KEYWORDS:
                raise _Refused(f"keyword `{value}=` is corral.sync.spawn's own option")
            kept.append(element.value)
            out.append(cst.Arg(element.value, keyword=cst.Name(value), equal=_EQUAL))
        return out


class _RemoveImports(RemoveImportsVisitor):
    """Removes unused imports, handing a removed line's blank lines and comments to the
    statement that follows it (so the blank line after a module docstring survives)."""

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self._removed: set[int] = set()

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        if not updated_node.body:  # every import on it went: LibCST drops the empty line
            self._removed.add(id(original_node))
        return updated_node

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return self._carry_leading_lines(original_node, updated_node)

    def _carry_leading_lines(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        body = list(updated.body)
        carry: list[cst.EmptyLine] = []
        j = 0
        for statement in original.body:
            if id(statement) in self._removed:
                carry += statement.leading_lines
                continue
            if carry and j < len(body) and not body[j].leading_lines:
                body[j] = body[j].with_changes(leading_lines=carry)
            carry = []
            j += 1
        return updated.with_changes(body=body)


class _Calls(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.found.append(node)


class _Replace(cst.CSTTransformer):
    def __init__(self, plan: dict[cst.CSTNode, cst.CSTNode]) -> None:
        self.plan = plan

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        new = self.plan.get(original)
        return new if isinstance(new, cst.BaseExpression) else updated


def fix_source(
    text: str,
    path: str,
    findings: Sequence[Finding],
    recheck: Callable[[str], Sequence[Finding]] | None = None,
    *,
    triage: bool = True,
    only: Finding | None = None,
) -> FileFix:
    """Rewrite what is safe in one file's source; ``findings`` come from the lint engine.

    Imports of a banned name are not calls: LibCST removes them once the rewrites leave them
    unused. ``recheck`` (the engine on the new source) tells which of them are still there.
    ``only`` rewrites that one finding (an editor's quick fix) while every other finding
    still counts, e.g. for "the argument contains another finding".
    """
    result = FileFix(path, text, text)
    fixable = [f for f in findings if f.code in FIXABLE and (only is None or f == only)]
    if not fixable:
        return result
    if triage:
        run, refusals, references = needs_codemod(text, fixable if only else findings)
        if not run:
            result.refusals = sorted(refusals + references)
            return result
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        result.refusals = [
            Refusal(path, f.line, f.col, f.code, f"LibCST cannot parse the file: {exc.message}")
            for f in fixable
        ]
        return result
    command = _FixCommand(CodemodContext(filename=path), path, findings, only)
    new = command.transform_module(module)
    refusals = list(command.refusals)
    references = command.references
    result.fixed = command.fixed
    if command.fixed:
        result.after = new.code
        if recheck is not None:
            references = _still_there(references, text, result.after, recheck(result.after))
    result.refusals = sorted(refusals + references)
    return result


def _still_there(
    references: list[Refusal], before: str, after: str, remaining: Sequence[Finding]
) -> list[Refusal]:
    from .baseline import normalise

    old_lines, new_lines = before.splitlines(), after.splitlines()

    def text(lines: list[str], line: int) -> str:
        return normalise(lines[line - 1]) if 0 < line <= len(lines) else ""

    left = {(f.code, text(new_lines, f.line)) for f in remaining}
    return [r for r in references if (r.code, text(old_lines, r.line)) in left]


def _fix_file(
    project: Project, shown: str, path: Path, baseline: Baseline | None
) -> FileFix | None:
    try:
        data = read_regular(path, MAX_SOURCE_BYTES)
    except OSError as exc:
        print(printable(f"{shown}: cannot read: {exc.strerror or exc}"), file=sys.stderr)
        return None
    text = decode(data)
    if isinstance(text, Unreadable):
        return None
    rel = project.relative(path)

    def check(source: str) -> list[Finding]:
        found = check_text(source, shown, project.rules, strict=project.config.strict)
        return [f for f in found if not project.allowed(f, rel)]

    findings = check(text)
    if baseline is not None and baseline.entries:
        # accepted debt is not rewritten: the baseline says the team has not reviewed it yet
        findings = split(baseline, findings, project, [path]).new
    return fix_source(text, shown, findings, check)


def _write(path: Path, shown: str, fix: FileFix, root: Path) -> None:
    """Write back in the file's own encoding (LibCST kept its newlines) and mode, through a
    new file renamed over it; a file that is not where it can be written is a usage error."""
    import io
    import tokenize

    from .commandline import UsageError

    try:
        data = read_regular(path, MAX_SOURCE_BYTES)
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        mode = os.stat(path).st_mode & 0o7777
        replace_atomically(path, fix.after.encode(encoding), root, mode)
    except OSError as exc:
        raise UsageError(printable(f"{shown}: cannot write: {exc.strerror or exc}")) from None


def run_fix(args: argparse.Namespace) -> int:
    from .commandline import EXIT_CLEAN, EXIT_FINDINGS, project_from_args, python_files
    from .discovery import display_path

    project = project_from_args(args)
    paths = [Path(p) for p in (args.paths or ["."])]
    baseline = None
    if not getattr(args, "no_baseline", False):
        baseline = Baseline.load(baseline_path(project, getattr(args, "baseline", None)))
    fixed = files = refused = 0
    root = project.config.root
    # excluded files are never rewritten, even when named on the command line
    for path in python_files(project, paths, force_exclude=True):
        shown = display_path(path)
        if not inside(path, root):  # reached through a symlink: not the project's to rewrite
            print(printable(f"{shown}: not fixed: outside the project {root}"), file=sys.stderr)
            continue
        fix = _fix_file(project, shown, path, baseline)
        if fix is None:
            continue
        for refusal in fix.refusals:
            print(
                printable(
                    f"{refusal.path}:{refusal.line}:{refusal.col}: {refusal.code} "
                    f"not fixed: {refusal.reason}"
                ),
                file=sys.stderr,
            )
        refused += len(fix.refusals)
        if not fix.changed:
            continue
        fixed += fix.fixed
        files += 1
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    fix.before.splitlines(keepends=True),
                    fix.after.splitlines(keepends=True),
                    fromfile=f"a/{shown}",
                    tofile=f"b/{shown}",
                )
            )
        else:
            _write(path, shown, fix, root)
    verb = "would fix" if args.diff else "fixed"
    print(
        f"{verb} {fixed} call{'s' if fixed != 1 else ''} in {files} file"
        f"{'s' if files != 1 else ''}; {refused} not fixed",
        file=sys.stderr,
    )
    if args.diff and files:
        return EXIT_FINDINGS
    return EXIT_CLEAN
