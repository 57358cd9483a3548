"""``corral config``: the effective configuration, and with ``--show-origin`` where each
setting came from (the project's file, a pack, a default or the command line)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .commandline import EXIT_CLEAN, add_project_options, project_from_args, register_subcommand
from .policy import render_config

__all__: list[str] = []


def _configure_config(parser: argparse.ArgumentParser) -> None:
    add_project_options(parser)
    parser.add_argument(
        "--show-origin",
        action="store_true",
        help="prefix each setting with the file or pack it came from",
    )


def _cmd_config(args: argparse.Namespace) -> int:
    project = project_from_args(args)
    text = render_config(project.config, show_origin=args.show_origin, cwd=Path.cwd().resolve())
    sys.stdout.write(text)
    return EXIT_CLEAN


register_subcommand(
    "config",
    "print the effective configuration (--show-origin: where each setting came from)",
    _configure_config,
    _cmd_config,
)
