"""flake8 entry point ``CRL``: the same matcher on the tree flake8 already parsed.

Configuration comes from the nearest ``[tool.corral]``, so flake8 and ``corral check`` agree
on rules, pins and allow-lists. flake8 applies ``# noqa`` itself; corral's own
``# corral: allow[...]`` comments are applied here.

flake8 runs the plugin once per file, in several processes. Each process asks once per
project for the project-wide subclass index (project_index.py), which reads the results
cache: the first process on a cold cache checks the project's tree (in-process), later
processes and later runs read the cache and re-read only files changed since.
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
from .project_index import index_for_file, project_index
from .reporters import replacement_for
from .resolver import SubclassIndex

__all__ = ["CorralChecker"]


@lru_cache(maxsize=32)
def _project_for(config_path: Path | None) -> Project:
    return load_project(config_path)


@lru_cache(maxsize=1024)
def _config_in(directory: str) -> Path | None:
    """flake8 calls the plugin once per file: look up configuration once per directory."""
    return find_config(Path(directory))


@lru_cache(maxsize=32)
def _index_for(config_path: Path | None) -> SubclassIndex:
    """The project's subclass index, once per process (daemonic flake8 workers may start
    no processes: the index is built in this one)."""
    return project_index(_project_for(config_path), jobs=1)


class CorralChecker:
    name = "corral"
    version = package_version()

    def __init__(self, tree: ast.Module, filename: str, lines: list[str]) -> None:
        self.tree = tree
        self.filename = filename
        self.lines = lines

    def run(self) -> Iterator[tuple[int, int, str, type[Any]]]:
        path = Path(self.filename)
        config = _config_in(os.path.dirname(os.path.abspath(self.filename)))
        project = _project_for(config)
        text = "".join(self.lines)
        index = index_for_file(_index_for(config), path, text)
        strict = project.config.strict
        relpath: str | None = None  # realpath costs a stat per component: only when needed
        for finding in check_tree(
            self.tree, text, self.filename, project.rules, strict=strict, index=index
        ):
            if relpath is None:
                relpath = project.relative(path)
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
