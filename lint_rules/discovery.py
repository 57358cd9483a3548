"""Which files to check: walk the given paths, honouring excludes and .gitignore files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pathspec

from .config import Config

__all__ = ["PathMatcher", "iter_python_files"]


class PathMatcher:
    """Gitignore-style globs (``runtime/**``, ``*.egg-info``) relative to the project root."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))

    def matches(self, relpath: str) -> bool:
        return self.spec.match_file(relpath)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _gitignore(directory: Path) -> pathspec.GitIgnoreSpec | None:
    ignore = directory / ".gitignore"
    if not ignore.is_file():
        return None
    try:
        return pathspec.GitIgnoreSpec.from_lines(ignore.read_text("utf-8", "replace").splitlines())
    except Exception:
        return None


def iter_python_files(paths: Iterable[Path], config: Config) -> Iterator[Path]:
    """Python files under ``paths``; files named explicitly are always included."""
    excluded = PathMatcher(config.exclude)
    root = config.root
    seen: set[Path] = set()
    for start in paths:
        if start.is_file():
            resolved = start.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield start
            continue
        ignores: list[tuple[Path, pathspec.GitIgnoreSpec]] = []
        if config.respect_gitignore:
            resolved_start = start.resolve()
            for parent in reversed(resolved_start.parents):
                if parent == root or root in parent.parents:
                    spec = _gitignore(parent)
                    if spec is not None:
                        ignores.append((parent, spec))
        yield from _walk(start, root, excluded, ignores, config.respect_gitignore, seen)


def _ignored(path: Path, ignores: list[tuple[Path, pathspec.GitIgnoreSpec]], is_dir: bool) -> bool:
    resolved = path.resolve()
    for base, spec in ignores:
        try:
            rel = resolved.relative_to(base).as_posix()
        except ValueError:
            continue
        if spec.match_file(rel + "/" if is_dir else rel):
            return True
    return False


def _walk(
    directory: Path,
    root: Path,
    excluded: PathMatcher,
    ignores: list[tuple[Path, pathspec.GitIgnoreSpec]],
    gitignore: bool,
    seen: set[Path],
) -> Iterator[Path]:
    if gitignore:
        spec = _gitignore(directory)
        if spec is not None:
            ignores = [*ignores, (directory.resolve(), spec)]
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = directory / entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        rel = _relative(path, root)
        if excluded.matches(rel + "/" if is_dir else rel) or excluded.matches(entry.name):
            continue
        if ignores and _ignored(path, ignores, is_dir):
            continue
        if is_dir:
            yield from _walk(path, root, excluded, ignores, gitignore, seen)
        elif entry.name.endswith(".py") and entry.is_file():
            resolved = path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield path
