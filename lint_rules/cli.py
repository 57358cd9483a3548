"""The ``corral`` command: check, rules, explain, and the subcommands other modules register.

Exit codes follow ruff and flake8: 0 clean, 1 findings, 2 usage or configuration error.
User errors print one line naming the problem and where; they never print a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .catalogue import CatalogueError
from .commandline import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_USAGE,
    SUBCOMMANDS,
    Handler,
    UsageError,
    add_project_options,
    collect_findings,
    display_path,
    project_from_args,
    register_subcommand,
)
from .config import ConfigError
from .discovery import force_excluded
from .findings import Finding, printable
from .project import Project, baseline_path
from .reporters import REPORTERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from .resolver import SubclassIndex

# the helpers live in commandline.py (below the CLI); they stay importable from here
__all__ = [
    "EXIT_CLEAN",
    "EXIT_FINDINGS",
    "EXIT_USAGE",
    "UsageError",
    "add_project_options",
    "collect_findings",
    "display_path",
    "main",
    "project_from_args",
    "register_subcommand",
]


def _apply_baseline(
    args: argparse.Namespace,
    project: Project,
    findings: list[Finding],
    paths: Sequence[Path],
    stdin: tuple[str, bytes] | None = None,
) -> list[Finding]:
    """The findings a baseline leaves; the baseline module (a thirtieth of a one-file
    check's start-up) is imported only when there is one to apply."""
    if args.no_baseline or (args.baseline is None and not os.path.lexists(baseline_path(project))):
        return findings
    from .baseline import apply_to_check

    return apply_to_check(args, project, findings, paths, stdin)


def _cmd_check(args: argparse.Namespace) -> int:
    project = project_from_args(args)
    stdin_mode = args.paths == ["-"] or (args.stdin_filename and not args.paths)
    if stdin_mode:
        name = args.stdin_filename or "-"
        data = sys.stdin.buffer.read()
        findings = _check_stdin(args, project, name, data)
        if (
            args.force_exclude
            and args.stdin_filename
            and force_excluded(Path(name), project.config)
        ):
            findings = []
        rel = project.relative(Path(name))
        findings = [f for f in findings if not project.allowed(f, rel)]
        findings = _apply_baseline(args, project, findings, [Path(name)], (name, data))
    else:
        paths = [Path(p) for p in (args.paths or ["."])]
        findings, _ = collect_findings(
            project,
            paths,
            use_cache=not args.no_cache,
            jobs=args.jobs,
            force_exclude=args.force_exclude,
        )
        findings = _apply_baseline(args, project, findings, paths)
    REPORTERS[args.output_format](findings, project.catalogue, sys.stdout)
    if args.exit_zero:
        return EXIT_CLEAN
    return EXIT_FINDINGS if findings else EXIT_CLEAN


def _check_stdin(
    args: argparse.Namespace, project: Project, name: str, data: bytes
) -> list[Finding]:
    """The source on stdin as the file ``name``, with the project's subclass index (from the
    results cache: warm after the first check of the project; see project_index.py)."""
    from .engine import check_module
    from .project_index import index_for_file, project_index

    index: SubclassIndex = {}
    if args.stdin_filename:
        whole = project_index(project, use_cache=not args.no_cache, jobs=args.jobs)
        index = index_for_file(whole, Path(name), data)
    strict = project.config.strict
    return check_module(data, name, project.rules, strict=strict, index=index)[0]


def _configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="files or directories (default: .); - for stdin")
    add_project_options(parser)
    parser.add_argument(
        "--output-format",
        "--format",
        choices=sorted(REPORTERS),
        default="text",
        dest="output_format",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--stdin-filename", help="name to report for source read from stdin")
    parser.add_argument("-j", "--jobs", type=int, help="worker processes (default: CPUs)")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings")
    parser.add_argument("--baseline", type=Path, metavar="PATH", help="baseline file to apply")
    parser.add_argument("--no-baseline", action="store_true", help="report baselined findings too")


def _cmd_rules(args: argparse.Namespace) -> int:
    project = project_from_args(args)
    if args.test:
        from .rule_tests import run_examples

        count, failures = run_examples(project.catalogue)
        for failure in failures:
            sys.stdout.write(failure.render())
        rules = len(project.catalogue.rules)
        print(
            f"{count - len(failures)} of {count} examples of {rules} rules agree", file=sys.stderr
        )
        return EXIT_FINDINGS if failures else EXIT_CLEAN
    enabled = project.rules.enabled
    out: TextIO = sys.stdout
    out.write(f"corral rule catalogue {project.catalogue.version}\n")
    for extra in project.config.organisation:
        out.write(f"organisation rules {extra.prefix} {extra.version} ({extra.source})\n")
    out.write("\n")
    out.write(f"{'code':<8}{'name':<28}{'level':<9}{'since':<8}{'on':<4}summary\n")
    for rule in project.catalogue:
        on = "yes" if rule.code in enabled else "no"
        out.write(
            f"{rule.code:<8}{rule.name:<28}{rule.level:<9}{rule.since:<8}{on:<4}{rule.summary}\n"
        )
    return EXIT_CLEAN


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain, find_rule

    project = project_from_args(args)
    rule = find_rule(project.catalogue, args.code)
    if rule is None:
        near = project.catalogue.nearest(args.code)
        hint = f" (did you mean {near}?)" if near else ""
        raise UsageError(f"unknown rule {args.code!r}{hint}")
    sys.stdout.write(explain(rule, project.catalogue.source))
    return EXIT_CLEAN


def _configure_rules(parser: argparse.ArgumentParser) -> None:
    add_project_options(parser)
    parser.add_argument(
        "--test",
        action="store_true",
        help="run every rule's examples (organisation rules too); exit 1 with a diff on failure",
    )


def _configure_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("code", help="rule code (CRL201) or name (asyncio-create-task)")
    add_project_options(parser)


def _cmd_tasks(args: argparse.Namespace) -> int:
    import importlib

    try:
        tasks_cli = importlib.import_module("corral.tasks_cli")
    except ImportError:
        raise UsageError("the durable task store is not available in this install") from None
    return int(tasks_cli.main(list(args.rest)))


def _configure_tasks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="see corral tasks --help")


LSP_EXTRA = "pip install 'corral[lsp]'"
LSP_MODULES = ("pygls", "lsprotocol", "cattrs")


def _cmd_server(args: argparse.Namespace) -> int:
    import importlib

    try:
        server = importlib.import_module("corral.lint_rules.server")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in LSP_MODULES:
            raise
        raise UsageError(
            f"corral server needs the lsp extra ({exc.name} is not installed): {LSP_EXTRA}"
        ) from None
    return int(server.serve())


def _configure_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdio", action="store_true", help="talk LSP over stdin/stdout (the default and only way)"
    )


def _load_plugins() -> None:
    """Modules that add subcommands register themselves on import."""
    import importlib

    for module in ("corral.lint_rules.adoption", "corral.lint_rules.policy_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


class _Version(argparse.Action):
    """``--version``, reading the installed metadata only when asked (importlib.metadata
    costs every other run a sixth of a one-file check)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from .config import package_version

        sys.stdout.write(f"corral {package_version()}\n")
        parser.exit()


_BUILTINS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = [
    ("check", "check files for raw concurrency", _configure_check, _cmd_check),
    ("rules", "list the rule catalogue", _configure_rules, _cmd_rules),
    (
        "explain",
        "explain a rule: rationale, replacement, examples",
        _configure_explain,
        _cmd_explain,
    ),
    ("tasks", "inspect and repair a durable task store", _configure_tasks, _cmd_tasks),
    ("server", "language server for editors (LSP over stdio)", _configure_server, _cmd_server),
]


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, with the terminal width read as ``shutil.get_terminal_size``
    reads it but without importing shutil (with lzma and bz2), which argparse does for every
    ``add_argument``: a thirtieth of a one-file check, for help text nobody asked for."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _subcommand(arguments: Sequence[str]) -> str | None:
    """The built-in subcommand ``arguments`` run, if that is certain before parsing: the
    first argument, when it names one (the top level takes only -h and --version, which
    come first if given at all)."""
    return arguments[0] if arguments[:1] and arguments[0] in {e[0] for e in _BUILTINS} else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, just that built-in subcommand's parser under
    the top level. Building all ten costs a one-file check (the pre-commit case) a sixth of
    its time, and importing the modules that register the others as much again."""
    if only is None:
        _load_plugins()
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Keep raw concurrency out of business code.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = (
        [*_BUILTINS, *SUBCOMMANDS] if only is None else [e for e in _BUILTINS if e[0] == only]
    )
    for name, help_text, configure, handler in commands:
        command = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Formatter
        )
        configure(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["tasks"]:
        # everything after "tasks" belongs to the store CLI, leading options included
        args = argparse.Namespace(rest=arguments[1:], handler=_cmd_tasks)
    else:
        parser = build_parser(_subcommand(arguments))
        args = parser.parse_args(arguments)
        if getattr(args, "handler", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
    try:
        return int(args.handler(args))
    except (ConfigError, CatalogueError, UsageError) as exc:
        print(f"corral: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("corral: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's main, not this __main__ copy: subcommands register themselves
    # with the module that ``corral.lint_rules.adoption`` imports.
    import importlib

    sys.exit(importlib.import_module("corral.lint_rules.cli").main())
