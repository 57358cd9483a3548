"""Check an editor buffer exactly as ``corral check`` would check that file on disk.

Same configuration resolution (the nearest pyproject.toml above the file, or an explicit
one), the same engine, per-rule ``allow`` globs, inline suppressions and the baseline. The
buffer's text is checked from memory: nothing is read from or written to the results cache,
so a check never waits on the disk. Projects are loaded once and re-read when their
pyproject.toml or baseline changes on disk (a stat per check tells).

A loaded project also holds its subclass index (project_index.py), which the server builds
in the background, and the subclasses its open buffers define as they stand (``overlay``),
so an unsaved edit to a defining module is seen by the modules that import it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .baseline import Baseline, Entry, SourceLines, baseline_path, key_findings, project_relpath
from .config import find_config
from .discovery import PathMatcher, relative_to
from .engine import check_text, check_text_without_fallback
from .findings import Finding
from .project import Project, Selection, load_selected
from .project_index import index_for_file
from .resolver import Exports, SubclassIndex

__all__ = ["Checked", "Loaded", "Projects", "check_buffer"]

Stamp = tuple[int, int] | None


def _stamp(path: Path | None) -> Stamp:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _stamps(files: tuple[Path | None, ...]) -> tuple[object, ...]:
    return (date.today().isoformat(), *(_stamp(f) for f in files))


@dataclass(frozen=True)
class Checked:
    """A finding in a buffer, and whether the project's baseline has accepted it."""

    finding: Finding
    baselined: bool = False


@dataclass
class Loaded:
    """A project with its baseline and excludes, and the file stamps they were read from."""

    project: Project
    baseline: frozenset[Entry]
    excluded: PathMatcher
    files: tuple[Path | None, ...]  # everything read: pyproject.toml, baseline, rule files
    stamps: tuple[object, ...]
    index: SubclassIndex = field(default_factory=dict)  # from disk, built in the background
    overlay: dict[str, Exports] = field(default_factory=dict)  # open buffers, by module
    index_requested: bool = False
    index_version: int = 0  # bumped whenever index or overlay changes (checks memoised on it)

    def subclasses(self) -> SubclassIndex:
        """The project's index with the open buffers' own subclasses in place of the disk's."""
        if not self.overlay:
            return self.index
        merged = {**self.index, **self.overlay}
        return {module: exports for module, exports in merged.items() if exports}

    def current(self) -> bool:
        """Nothing it was read from changed on disk, and it is still the same day (expiring
        suppressions are judged against today's date)."""
        return self.stamps == _stamps(self.files)

    def is_excluded(self, path: Path) -> bool:
        """True if a walk of the project (``corral check .``) would skip this file."""
        rel = relative_to(os.path.realpath(path), os.path.realpath(self.project.config.root))
        if rel is None:
            return False
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            name, prefix = parts[i - 1], "/".join(parts[:i])
            suffix = "/" if i < len(parts) else ""
            if self.excluded.matches(name + suffix) or self.excluded.matches(prefix + suffix):
                return True
        return False


class Projects:
    """Loaded projects by configuration file; ``selection`` is the editor's rule settings."""

    def __init__(self, selection: Selection | None = None, config: Path | None = None) -> None:
        self.selection = selection or Selection()
        self.config = config
        self._loaded: dict[Path | None, Loaded] = {}
        self.generation = 0  # bumped by clear(): a load begun before it is not kept

    def configure(self, selection: Selection, config: Path | None) -> None:
        """New editor settings: every project is loaded again on next use."""
        self.selection, self.config = selection, config
        self.clear()

    def clear(self) -> None:
        self.generation += 1
        self._loaded.clear()

    def loaded(self, path: Path) -> Loaded | None:
        """The project for ``path`` if it is loaded and current (a few stats, no reading)."""
        loaded = self._loaded.get(self.config or find_config(path.parent))
        return loaded if loaded is not None and loaded.current() else None

    def for_file(self, path: Path) -> Loaded:
        """The project that governs ``path``; raises ConfigError/CatalogueError if broken."""
        generation = self.generation
        config_path = self.config or find_config(path.parent)
        loaded = self._loaded.get(config_path)
        if loaded is not None and loaded.current():
            return loaded
        start = path.parent if config_path is None else None
        files: list[Path | None] = [config_path]  # stamped before reading: never miss a write
        stamps = _stamps(tuple(files))
        project = load_selected(config_path, self.selection, start=start)
        file = baseline_path(project)
        policy = (*project.config.policy_files, *project.config.rule_files)
        more = [file, *(Path(f) for f in policy)]
        stamps = (*stamps, *(_stamp(f) for f in more))
        baseline = Baseline.load(file)
        loaded = Loaded(
            project,
            frozenset(baseline.entries),
            PathMatcher(project.config.exclude),
            (*files, *more),
            stamps,
        )
        if generation == self.generation:
            self._loaded[config_path] = loaded
        return loaded


def check_buffer(
    loaded: Loaded,
    path: Path,
    text: str,
    *,
    fallback: bool = True,
    exports: Exports | None = None,
    timings: dict[str, float] | None = None,
) -> Sequence[Checked] | None:
    """Findings for the buffer ``text`` of the file at ``path`` (which need not exist).

    With ``fallback=False`` LibCST is never started: None when only it could read the text
    (syntax newer than this Python). ``exports`` receives the buffer's own subclasses;
    ``timings`` the seconds spent in each stage."""
    project = loaded.project
    shown = str(path)
    index = index_for_file(loaded.subclasses(), path, text)
    strict = project.config.strict
    if fallback:
        findings = check_text(
            text, shown, project.rules, strict=strict, index=index, exports=exports
        )
    else:
        quick = check_text_without_fallback(
            text,
            shown,
            project.rules,
            strict=strict,
            index=index,
            exports=exports,
            timings=timings,
        )
        if quick is None:
            return None
        findings = quick
    rel = project.relative(path)
    findings = [f for f in findings if not project.allowed(f, rel)]
    if not loaded.baseline or not findings:
        return [Checked(f) for f in findings]
    lines = SourceLines()
    lines.remember(shown, text)
    keyed = key_findings(findings, lines, project_relpath(project))
    return sorted(
        (Checked(f, entry in loaded.baseline) for entry, f in keyed),
        key=lambda c: c.finding,
    )
