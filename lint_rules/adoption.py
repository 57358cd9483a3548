"""Adoption commands for existing code: ``corral baseline``, ``corral fix``, ``corral audit``.

Imported by the CLI when it runs one of them (or lists them all); importing it registers the
subcommands (the ``sarif`` and ``github`` formats are in reporters.py). The work lives in
baseline.py, fixes.py, audit.py and sarif.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .baseline import SOURCE_LINES as _LINES
from .baseline import (
    Baseline,
    Scope,
    add_baseline_options,
    baseline_path,
    key_findings,
    project_relpath,
)
from .commandline import (
    EXIT_CLEAN,
    add_project_options,
    collect_findings,
    project_from_args,
    register_subcommand,
)

__all__: list[str] = []


def _paths(args: argparse.Namespace) -> list[Path]:
    return [Path(p) for p in (args.paths or ["."])]


def _configure_baseline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="files or directories (default: .)")
    add_project_options(parser)
    add_baseline_options(parser)
    parser.add_argument(
        "--prune",
        action="store_true",
        help="only drop entries that no longer match; never add new findings",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def _cmd_baseline(args: argparse.Namespace) -> int:
    """Accept today's findings as debt (or, with --prune, forget the debt that was paid)."""
    project = project_from_args(args)
    paths = _paths(args)
    findings, _ = collect_findings(project, paths, use_cache=not args.no_cache)
    path = baseline_path(project, args.baseline)
    baseline = Baseline.load(path)
    current = {entry for entry, _ in key_findings(findings, _LINES, project_relpath(project))}
    scope = Scope(project, paths)
    before = set(baseline.entries)
    if args.prune:
        baseline.entries = {e for e in before if e in current or not scope.covers(e)}
    else:
        baseline.entries = {e for e in before if not scope.covers(e)} | current
    baseline.save(project.catalogue.version, project.config.root)
    added = len(baseline.entries - before)
    removed = len(before - baseline.entries)
    print(
        f"{path}: {len(baseline.entries)} entries ({added} added, {removed} removed)",
        file=sys.stderr,
    )
    if args.prune:
        left_out = len(current - baseline.entries)
        if left_out:
            print(
                f"{left_out} new findings were not added: fix them, or run corral baseline",
                file=sys.stderr,
            )
    return EXIT_CLEAN


def _configure_fix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="files or directories (default: .)")
    add_project_options(parser)
    add_baseline_options(parser)
    parser.add_argument("--no-baseline", action="store_true", help="rewrite baselined findings too")
    parser.add_argument(
        "--diff",
        action="store_true",
        help="print a unified diff instead of writing; exit 1 if anything would change",
    )


def _cmd_fix(args: argparse.Namespace) -> int:
    from .fixes import run_fix

    return run_fix(args)


def _configure_audit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="files or directories (default: .)")
    add_project_options(parser)
    add_baseline_options(parser)
    parser.add_argument(
        "--format",
        "--output-format",
        choices=("markdown", "json"),
        default="markdown",
        dest="output_format",
    )
    parser.add_argument("-o", "--output", type=Path, help="write the report here (default: stdout)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument(
        "--guard-report",
        type=Path,
        metavar="PATH",
        help="add the raw spawns seen at run time (JSON from pytest --corral-guard=report)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="AUDIT_JSON",
        help="combine many repositories' `audit --format json` into one fleet report",
    )


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import run_audit

    return run_audit(args)


register_subcommand(
    "baseline",
    "accept current findings as a baseline so only new ones fail",
    _configure_baseline,
    _cmd_baseline,
)
register_subcommand(
    "fix", "rewrite fire-and-forget tasks and threads to corral.spawn", _configure_fix, _cmd_fix
)
register_subcommand(
    "audit",
    "governance report: findings, suppressions, debt, CWE/OWASP",
    _configure_audit,
    _cmd_audit,
)
