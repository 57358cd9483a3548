"""What corral's subcommands share: exit codes, user errors, project options, the subcommand
registry and file collection.

It lives below ``cli.py`` so that the modules behind subcommands (baseline, fix, audit) never
import the entry point: layering is one-way, ``cli.py`` is imported by nothing but ``main``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .discovery import display_path, iter_python_files, iter_python_paths, relative_to
from .findings import Finding
from .project import Project, Selection, load_selected
from .project_index import results_cache
from .runner import check_files

__all__ = [
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "EXIT_USAGE",
    "SUBCOMMANDS",
    "UsageError",
    "add_project_options",
    "collect_findings",
    "display_path",
    "project_from_args",
    "python_files",
    "register_subcommand",
]

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]
SUBCOMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = []


class UsageError(Exception):
    """A user error the CLI reports in one line with exit code 2."""


def register_subcommand(
    name: str,
    help_text: str,
    configure: Callable[[argparse.ArgumentParser], None],
    handler: Handler,
) -> None:
    """Let a module add ``corral <name>`` (baseline, fix, audit...) without editing the CLI."""
    SUBCOMMANDS.append((name, help_text, configure, handler))


def _codes(value: str) -> list[str]:
    return [part.strip().upper() for part in value.split(",") if part.strip()]


def add_project_options(parser: argparse.ArgumentParser) -> None:
    """Options every path-taking command shares: config file, rule selection, excludes."""
    parser.add_argument("--config", type=Path, help="pyproject.toml to read [tool.corral] from")
    parser.add_argument("--select", type=_codes, help="comma-separated codes or prefixes")
    parser.add_argument("--extend-select", type=_codes, help="codes or prefixes to add")
    parser.add_argument("--ignore", type=_codes, help="codes or prefixes to turn off")
    parser.add_argument(
        "--strict", action="store_true", default=None, help="enable strict-level rules"
    )
    parser.add_argument(
        "--force-exclude",
        action="store_true",
        help="apply exclude to files named on the command line too (as pre-commit passes them)",
    )


def project_from_args(args: argparse.Namespace) -> Project:
    if args.config is not None and not args.config.is_file():
        raise UsageError(f"config file not found: {args.config}")
    selection = Selection(
        select=args.select,
        extend_select=args.extend_select or [],
        ignore=args.ignore,
        strict=args.strict,
    )
    return load_selected(args.config, selection)


def python_files(
    project: Project,
    paths: Sequence[Path],
    *,
    force_exclude: bool = False,
    problems: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """The files a command works on; a missing path is a usage error. Directories that
    cannot be listed go to ``problems``."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"path does not exist: {path}")
    found = iter_python_files(paths, project.config, problems, force_exclude=force_exclude)
    return list(found)


def collect_findings(
    project: Project,
    paths: Sequence[Path],
    *,
    use_cache: bool = True,
    jobs: int | None = None,
    force_exclude: bool = False,
) -> tuple[list[Finding], int]:
    """Findings for ``paths`` after per-rule allow-lists; also returns the number of files.

    Files stream from discovery into the check: nothing is kept per file but what the
    check itself needs (memory stays flat in the number of files)."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"path does not exist: {path}")
    problems: list[tuple[str, str]] = []
    found = iter_python_paths(paths, project.config, problems, force_exclude=force_exclude)
    cwd = os.path.realpath(os.getcwd())
    files = ((display_path(p, cwd), p) for p in found)
    root = os.path.realpath(project.config.root)
    cache = results_cache(project, use_cache=use_cache)
    result = check_files(files, project.rules, cache, strict=project.config.strict, jobs=jobs)
    for directory, why in problems:
        shown = display_path(Path(directory), cwd)
        result.findings.append(Finding(shown, 1, 1, "CRL901", why))
    relpaths = {shown: relative_to(path, root) or shown for shown, path in result.paths.items()}
    kept = [f for f in result.findings if not project.allowed(f, relpaths.get(f.path, f.path))]
    return kept, result.files
