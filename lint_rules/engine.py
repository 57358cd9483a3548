"""Check one file: decode, prefilter, parse, resolve, suppress. Shared by every entry point."""

from __future__ import annotations

import ast
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .findings import Finding, printable
from .packages import package_of
from .records import replace
from .resolver import Exports, RawFinding, Resolver, SubclassIndex
from .ruleset import RuleSet
from .source import (
    Unreadable,
    decode,
    deep_recursion,
    parse,
    parse_without_fallback,
    split_lines,
)
from .suppressions import Suppression, find_suppressions, may_suppress
from .suppressions import today as local_today

__all__ = [
    "check_bytes",
    "check_module",
    "check_text",
    "check_text_without_fallback",
    "check_tree",
    "package_of",
]

UNREADABLE, NO_REASON, UNUSED = "CRL901", "CRL902", "CRL903"
UNSUPPRESSABLE, EXPIRED = "CRL904", "CRL905"


def check_bytes(data: bytes, path: str, rules: RuleSet, *, strict: bool = False) -> list[Finding]:
    """Findings for a file's raw bytes (undecodable files give CRL901, never an exception)."""
    return check_module(data, path, rules, strict=strict)[0]


def check_module(
    data: bytes,
    path: str,
    rules: RuleSet,
    *,
    strict: bool = False,
    index: SubclassIndex | None = None,
    reference: bool = False,
    matched: bool | None = None,
) -> tuple[list[Finding], Exports]:
    """Findings for a file's raw bytes, and the banned-class subclasses it defines at module
    level (for the project-wide index). With ``index`` (subclasses other modules of the
    project define), names imported from those modules resolve to the subclasses; the file
    is then resolved even when the prefilter would rule it out, since a subclass's name is
    no banned word.

    ``reference`` takes no shortcut at all (no prefilter, no per-function skip, every file
    tokenized for suppressions): the slow path the differential test holds the fast one to.
    ``matched`` is the prefilter's verdict when the caller has it already (the runner
    prefilters every file before handing candidates to workers)."""
    exports: Exports = {}
    text = decode(data)
    if isinstance(text, Unreadable):
        return _unreadable(text, path, rules), exports
    if matched is None or index:
        matched = bool(index) or rules.may_match(text, path)
    matched = matched or reference
    findings = _check_decoded(text, path, rules, strict, matched, index, exports, reference)
    return findings, exports


def check_text(
    text: str,
    path: str,
    rules: RuleSet,
    *,
    strict: bool = False,
    index: SubclassIndex | None = None,
    exports: Exports | None = None,
) -> list[Finding]:
    """Findings for decoded source; parses only when the prefilter says it may match (or
    ``index`` holds subclasses the file imports). ``exports`` receives the file's own."""
    matched = bool(index) or rules.may_match(text, path)
    return _check_decoded(text, path, rules, strict, matched, index, exports)


def check_tree(
    tree: ast.Module,
    text: str,
    path: str,
    rules: RuleSet,
    *,
    strict: bool = False,
    index: SubclassIndex | None = None,
) -> list[Finding]:
    """Findings for an already parsed module (the flake8 plugin's entry, no second parse).
    As in ``_check_decoded``, a file the prefilter rules out and holding no suppression
    comment has no findings: nothing more is done for it (most files flake8 hands over)."""
    matched = bool(index) or rules.may_match(text, path)
    if not matched and not may_suppress(text, rules.prefixes):
        return []
    return _check_parsed(tree, text, path, rules, strict, matched, index)


def _check_decoded(
    text: str,
    path: str,
    rules: RuleSet,
    strict: bool,
    matched: bool,
    index: SubclassIndex | None = None,
    exports: Exports | None = None,
    reference: bool = False,
) -> list[Finding]:
    if not matched and not may_suppress(text, rules.prefixes):
        return []
    with _no_gc():
        tree = parse(text, path)
        if isinstance(tree, Unreadable):
            return _unreadable(tree, path, rules)
        findings = _check_parsed(
            tree, text, path, rules, strict, matched, index, exports, reference
        )
        del tree  # freed with the collector still off: it would scan the whole tree once more
    return findings


def _check_parsed(
    tree: ast.Module,
    text: str,
    path: str,
    rules: RuleSet,
    strict: bool,
    matched: bool,
    index: SubclassIndex | None = None,
    exports: Exports | None = None,
    reference: bool = False,
) -> list[Finding]:
    """Resolve (when the prefilter matched) and apply suppressions: the prefilter ran once."""
    try:
        with deep_recursion():
            raw: list[RawFinding] = []
            if matched:
                # without the text the resolver cannot skip a function: it resolves them all
                resolver = Resolver(rules, None if reference else text, package_of(path), index)
                raw = resolver.run(tree)
                if exports is not None:
                    exports.update(resolver.exports())
    except RecursionError:
        return _unreadable(Unreadable("cannot check: expression nested too deeply"), path, rules)
    lines = split_lines(text)
    findings = [_to_finding(f, path, lines) for f in raw]
    suppressed = _apply_suppressions(
        findings, find_suppressions(text, rules.prefixes, gate=not reference), path, rules, strict
    )
    return sorted(
        f if f.source or not 0 < f.line <= len(lines) else replace(f, source=lines[f.line - 1])
        for f in suppressed
    )


@contextmanager
def _no_gc() -> Iterator[None]:
    """A parsed module is hundreds of thousands of acyclic objects: the cyclic collector
    would scan them over and over while they are built (about a fifth of the run) and find
    nothing. Reference counting frees them, inside the block: the collector, turned back on
    while the tree is alive, would count every node as new and scan them all once more."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unreadable(problem: Unreadable, path: str, rules: RuleSet) -> list[Finding]:
    if UNREADABLE not in rules.enabled:
        return []
    rule = rules.catalogue.get(UNREADABLE)
    summary = rule.summary if rule else "file could not be checked"
    message = f"{problem.reason}: {summary}"
    return [Finding(path, problem.line, problem.col, UNREADABLE, message)]


def _char_col(lines: list[str], line: int, byte_col: int) -> int:
    """``ast`` columns are UTF-8 byte offsets; reporters want characters (1-based)."""
    if 0 < line <= len(lines):
        text = lines[line - 1]
        if not text.isascii():
            return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace")) + 1
    return byte_col + 1


def _to_finding(raw: RawFinding, path: str, lines: list[str]) -> Finding:
    return Finding(
        path=path,
        line=raw.line,
        col=_char_col(lines, raw.line, raw.col),
        code=raw.code,
        message=raw.message,
        end_line=raw.end_line,
        end_col=_char_col(lines, raw.end_line, raw.end_col),
        source=lines[raw.line - 1] if 0 < raw.line <= len(lines) else "",
        qualname=raw.qualname,
        kind=raw.kind,
        evades=raw.evades,
    )


def _apply_suppressions(
    findings: list[Finding],
    suppressions: list[Suppression],
    path: str,
    rules: RuleSet,
    strict: bool,
) -> list[Finding]:
    if not suppressions:
        return findings
    today = rules.today or local_today()
    by_line: dict[int, list[Suppression]] = {}
    kept: list[Finding] = []
    for sup in suppressions:
        # governance first: these comments never suppress, and say so
        lapsed = _expiry_problem(sup, today)
        if lapsed is not None and EXPIRED in rules.enabled:
            kept.append(Finding(path, sup.line, sup.col, EXPIRED, lapsed))
        for code in sup.codes:
            if code in rules.no_suppress and UNSUPPRESSABLE in rules.enabled:
                message = f"{code} may not be suppressed: the policy lists it in no-suppress"
                kept.append(Finding(path, sup.line, sup.col, UNSUPPRESSABLE, message))
        if lapsed is not None:
            continue
        for line in sup.lines:
            by_line.setdefault(line, []).append(sup)
    for finding in findings:
        covering = None
        if finding.code not in rules.no_suppress:
            covering = next(
                (s for s in by_line.get(finding.line, ()) if finding.code in s.codes),
                None,
            )
        if covering is None:
            kept.append(finding)
        else:
            covering.used.add(finding.code)
    for sup in suppressions:
        if _expiry_problem(sup, today) is not None:
            continue
        needs_reason = sup.kind == "allow" or strict
        if sup.used and needs_reason and not sup.reason and NO_REASON in rules.enabled:
            what = f"# corral: allow[{', '.join(sup.codes)}]"
            if sup.kind == "noqa":
                what = f"# noqa: {', '.join(sup.codes)}"
            kept.append(
                Finding(
                    path,
                    sup.line,
                    sup.col,
                    NO_REASON,
                    f'`{what}` has no reason: add reason="why this is safe"',
                )
            )
        if UNUSED not in rules.enabled:
            continue
        for code in sup.codes:
            if code in sup.used or code in rules.no_suppress:
                continue
            if rules.catalogue.get(code) is None:
                near = rules.catalogue.nearest(code)
                hint = f" (did you mean {near}?)" if near else ""
                message = f"suppression names unknown rule {printable(code)}{hint}"
            elif code in rules.enabled:
                message = f"suppression of {code} suppresses nothing on this line: remove it"
            else:
                continue
            kept.append(Finding(path, sup.line, sup.col, UNUSED, message))
    return kept


def _expiry_problem(sup: Suppression, today: str) -> str | None:
    """Why a suppression no longer suppresses (its ``until`` day has passed), if it does not."""
    lapsed = sup.lapsed(today)
    if lapsed is None:
        return None
    owner = f"owner {sup.owner}" if sup.owner else "no owner given"
    codes = ", ".join(sup.codes)
    if lapsed == "invalid":
        return f'suppression of {codes} has until="{sup.until}", not a YYYY-MM-DD date ({owner})'
    return (
        f"suppression of {codes} expired on {sup.until} ({owner}): fix the code or renew "
        "the exception"
    )


def check_text_without_fallback(
    text: str,
    path: str,
    rules: RuleSet,
    *,
    strict: bool = False,
    index: SubclassIndex | None = None,
    exports: Exports | None = None,
    timings: dict[str, float] | None = None,
) -> list[Finding] | None:
    """``check_text`` that never starts the LibCST fallback: None when only it could read
    the text (syntax newer than this Python), for callers that must not wait for it (the
    language server's event loop). ``timings`` gains the seconds spent in each stage."""
    start = time.perf_counter()
    matched = bool(index) or rules.may_match(text, path)
    stages = {"prefilter": time.perf_counter() - start}
    found: list[Finding] | None = []
    if matched or may_suppress(text, rules.prefixes):
        with _no_gc():
            start = time.perf_counter()
            tree = parse_without_fallback(text, path)
            stages["parse"] = time.perf_counter() - start
            start = time.perf_counter()
            if isinstance(tree, SyntaxError):
                found = None
            elif isinstance(tree, Unreadable):
                found = _unreadable(tree, path, rules)
            else:
                found = _check_parsed(tree, text, path, rules, strict, matched, index, exports)
            del tree  # freed with the collector still off (as in _check_decoded)
            stages["resolve"] = time.perf_counter() - start
    if timings is not None:
        for stage, seconds in stages.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return found
