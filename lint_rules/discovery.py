"""Which files to check: walk the given paths, honouring excludes and .gitignore files.

Paths are handled as strings from one ``realpath`` per starting point: resolving every file
would cost more than checking the tree when the cache is warm.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import Config, ConfigError
from .safeio import MAX_CONFIG_BYTES, read_regular

__all__ = [
    "PathMatcher",
    "display_path",
    "force_excluded",
    "iter_python_files",
    "iter_python_paths",
    "relative_to",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pathspec

Ignores = list[tuple[str, "pathspec.GitIgnoreSpec"]]
Problems = list[tuple[str, str]]  # (path, why it could not be looked into)


# a bare name (``build``, ``.venv``) or ``*`` + a bare suffix (``*.egg-info``): in gitignore
# terms, a path matches when one of its components is the name (ends with the suffix)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*|\.[A-Za-z0-9_][A-Za-z0-9._+-]*")
_SUFFIX = re.compile(r"\*[A-Za-z0-9._+-]+")


class PathMatcher:
    """Gitignore-style globs (``runtime/**``, ``*.egg-info``) relative to the project root.

    When every pattern is a bare name or ``*`` + a bare suffix (the default excludes), paths
    are matched component by component without pathspec (whose import costs a pre-commit
    run a tenth of its time); any other pattern hands every pattern to pathspec, in order."""

    def __init__(self, patterns: Iterable[str], where: str = "exclude") -> None:
        lines = list(patterns)
        self.spec: pathspec.GitIgnoreSpec | None = None
        self.names: frozenset[str] = frozenset()
        self.suffixes: tuple[str, ...] = ()
        if all(isinstance(p, str) and (_NAME.fullmatch(p) or _SUFFIX.fullmatch(p)) for p in lines):
            self.names = frozenset(p for p in lines if not p.startswith("*"))
            self.suffixes = tuple(p[1:] for p in lines if p.startswith("*"))
            return
        import pathspec

        try:
            self.spec = pathspec.GitIgnoreSpec.from_lines(lines)
        except (ValueError, TypeError) as exc:  # GitIgnorePatternError is a ValueError
            raise ConfigError(f"{where}: invalid pattern: {exc}") from None

    def matches_name(self, name: str) -> bool:
        """``matches(name)`` for one path component, without pathspec (``spec`` is None)."""
        return name in self.names or bool(self.suffixes and name.endswith(self.suffixes))

    def matches(self, relpath: str) -> bool:
        if self.spec is not None:
            return bool(self.spec.match_file(relpath))  # pathspec 0.12 may answer None
        names, suffixes = self.names, self.suffixes
        return any(
            part in names or (suffixes and part.endswith(suffixes))
            for part in relpath.split("/")
            if part
        )


def relative_to(path: str, base: str) -> str | None:
    """``path`` relative to ``base`` (both absolute, already real), or None if outside it."""
    if path == base:
        return "."
    prefix = base if base.endswith(os.sep) else base + os.sep
    if path.startswith(prefix):
        return path[len(prefix) :].replace(os.sep, "/")
    return None


def display_path(path: Path | str, cwd: str | None = None) -> str:
    """How a file is shown: relative to the working directory when it is below it."""
    base = cwd if cwd is not None else os.path.realpath(os.getcwd())
    if isinstance(path, Path):
        rel = relative_to(str(path), base)
        return rel if rel is not None else path.as_posix()
    rel = relative_to(path, base)  # a real path, as discovery gives it: already normal
    if rel is not None:
        return rel
    return path if os.sep == "/" else path.replace(os.sep, "/")


def _force_excluded(real: str, root: str, excluded: PathMatcher, is_dir: bool) -> bool:
    """An explicitly named path that is, or lies under, an excluded name (``--force-exclude``)."""
    rel = relative_to(real, root)
    if rel == ".":
        return False
    if rel is None:
        return excluded.matches(os.path.basename(real) + ("/" if is_dir else ""))
    parts = rel.split("/")
    for i, name in enumerate(parts):
        suffix = "/" if is_dir or i < len(parts) - 1 else ""
        if excluded.matches(name + suffix) or excluded.matches("/".join(parts[: i + 1]) + suffix):
            return True
    return False


def force_excluded(path: Path, config: Config) -> bool:
    """Whether ``--force-exclude`` drops this explicitly named path (or stdin filename)."""
    real = os.path.realpath(path)
    is_dir = os.path.isdir(real)
    return _force_excluded(real, os.path.realpath(config.root), PathMatcher(config.exclude), is_dir)


def _gitignore(directory: str) -> pathspec.GitIgnoreSpec | None:
    """The directory's ``.gitignore``; one that is not a readable regular file of sane size
    (a FIFO, a link to ``/dev/zero``) is a configuration error, never a hang."""
    path = os.path.join(directory, ".gitignore")
    try:
        data = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if not os.path.lexists(path):
            return None
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = data.decode("utf-8", "replace").splitlines()
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, TypeError) as exc:  # GitIgnorePatternError is a ValueError
        raise ConfigError(f"{path}: invalid pattern: {exc}") from None


def iter_python_files(
    paths: Iterable[Path],
    config: Config,
    problems: Problems | None = None,
    *,
    force_exclude: bool = False,
) -> Iterator[Path]:
    """``iter_python_paths`` as Paths."""
    for found in iter_python_paths(paths, config, problems, force_exclude=force_exclude):
        yield Path(found)


def iter_python_paths(
    paths: Iterable[Path],
    config: Config,
    problems: Problems | None = None,
    *,
    force_exclude: bool = False,
) -> Iterator[str]:
    """Absolute, real paths of the Python files under ``paths``, as strings, in a stable
    order, each once. Nothing is kept per file (a path object, a set entry) unless more than
    one path is given, where one file may lie under two of them.

    Files named explicitly are included even when excluded or ignored, unless
    ``force_exclude`` is given (ruff's convention, for pre-commit, which names every file),
    and so is anything else named explicitly that is not a directory (a FIFO, a device):
    reading it then reports it. A directory that cannot be listed is added to ``problems``.
    """
    excluded = PathMatcher(config.exclude, f"{config.source or 'configuration'}: exclude")
    root = os.path.realpath(config.root)
    starts = list(paths)
    seen: set[str] | None = set() if len(starts) > 1 else None
    for start in starts:
        real = os.path.realpath(start)
        is_file = not os.path.isdir(real)
        if force_exclude and _force_excluded(real, root, excluded, not is_file):
            continue
        if is_file:
            if seen is None:
                yield real
            elif real not in seen:
                seen.add(real)
                yield real
            continue
        ignores: Ignores = []
        if config.respect_gitignore:
            parent = os.path.dirname(real)
            chain: list[str] = []
            while relative_to(parent, root) is not None:
                chain.append(parent)
                if parent == root:
                    break
                parent = os.path.dirname(parent)
            for directory in reversed(chain):
                spec = _gitignore(directory)
                if spec is not None:
                    ignores.append((directory, spec))
        walk = _walk(real, root, excluded, ignores, config.respect_gitignore, problems)
        if seen is None:  # one walk never yields a path twice (it follows no directory link)
            yield from walk
            continue
        for found in walk:
            if found not in seen:
                seen.add(found)
                yield found


def _ignored(path: str, ignores: Ignores, is_dir: bool) -> bool:
    for base, spec in ignores:
        rel = relative_to(path, base)
        if rel is not None and spec.match_file(rel + "/" if is_dir else rel):
            return True
    return False


def _walk(
    directory: str,
    root: str,
    excluded: PathMatcher,
    ignores: Ignores,
    gitignore: bool,
    problems: Problems | None,
) -> Iterator[str]:
    if gitignore:
        spec = _gitignore(directory)
        if spec is not None:
            ignores = [*ignores, (directory, spec)]
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        if problems is not None:
            problems.append((directory, f"cannot list directory: {exc.strerror or exc}"))
        return
    # names and suffixes match component by component: a path below the root is excluded
    # when its directory's path is or its own name is, so the directory is asked once
    by_name = excluded.spec is None
    if by_name:
        here = relative_to(directory, root)
        if here is not None and here != "." and excluded.matches(here):
            return
    for entry in entries:
        path = entry.path
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if by_name:
            if excluded.matches_name(entry.name):
                continue
        else:
            rel = relative_to(path, root)
            if excluded.matches(entry.name + "/" if is_dir else entry.name) or (
                rel is not None and excluded.matches(rel + "/" if is_dir else rel)
            ):
                continue
        if ignores and _ignored(path, ignores, is_dir):
            continue
        if is_dir:
            yield from _walk(path, root, excluded, ignores, gitignore, problems)
        elif entry.name.endswith(".py") and not _is_directory(entry):
            yield path  # not only regular files: reading reports a FIFO or a symlink loop


def _is_directory(entry: os.DirEntry[str]) -> bool:
    """A symlink to a directory named ``x.py`` is not a file to check (nor to walk)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
