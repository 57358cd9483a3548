"""flake8 entry point ``CRL``: the same matcher on the tree flake8 already parsed.

Configuration comes from the nearest ``[tool.corral]``, so flake8 and ``corral check`` agree
on rules, pins and allow-lists. flake8 applies ``# noqa`` itself; corral's own
``# corral: allow[...]`` comments are applied here.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import find_config, package_version
from .engine import check_tree
from .project import Project, load_project
from .reporters import replacement_for

__all__ = ["CorralChecker"]


@lru_cache(maxsize=32)
def _project_for(config_path: Path | None) -> Project:
    return load_project(config_path)


@lru_cache(maxsize=1024)
def _project_in(directory: str) -> Project:
    """flake8 calls the plugin once per file: look up configuration once per directory."""
    return _project_for(find_config(Path(directory)))


class CorralChecker:
    name = "corral"
    version = package_version()

    def __init__(self, tree: ast.Module, filename: str, lines: list[str]) -> None:
        self.tree = tree
        self.filename = filename
        self.lines = lines

    def run(self) -> Iterator[tuple[int, int, str, type[Any]]]:
        path = Path(self.filename)
        project = _project_in(os.path.dirname(os.path.abspath(self.filename)))
        text = "".join(self.lines)
        relpath = project.relative(path)
        for finding in check_tree(
            self.tree, text, self.filename, project.rules, strict=project.config.strict
        ):
            if project.allowed(finding, relpath):
                continue
            hint = replacement_for(finding, project.catalogue)
            suffix = f" (use: {hint})" if hint else ""
            yield (
                finding.line,
                finding.col - 1,
                f"{finding.code} {finding.message}{suffix}",
                type(self),
            )
