"""The baseline: findings a project has accepted as legacy debt, so the gate can go on today.

An entry is keyed by (rule code, project-relative path, normalised source line, occurrence)
rather than by line number, so edits elsewhere in a file do not invalidate it. The occurrence
is the finding's index among findings of the same rule on identical lines of the same file:
three identical ``asyncio.create_task(poll())`` lines need three entries, and a fourth copy is
a new finding. A renamed file shows up as stale entries (old path) plus new findings (new
path): the key holds the path on purpose, so moving code is a visible change to the debt.
"""

from __future__ import annotations

import argparse
import codecs
import io
import json
import os
import sys
import tokenize
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .config import ConfigError
from .findings import Finding
from .project import DEFAULT_BASELINE, Project, baseline_path
from .safeio import (
    MAX_DATA_BYTES,
    MAX_SOURCE_BYTES,
    UnsafePath,
    inside,
    read_regular,
    replace_atomically,
)
from .source import Unreadable, decode, split_lines

__all__ = [
    "DEFAULT_BASELINE",
    "Baseline",
    "Entry",
    "SourceLines",
    "apply_to_check",
    "baseline_path",
    "key_findings",
    "normalise",
]

FORMAT_VERSION = 1
FILE_MODE = 0o644


def normalise(line: str) -> str:
    """The line's code with every run of whitespace collapsed: re-indenting is not a change."""
    return " ".join(line.split())


class SourceLines:
    """Normalised source lines by (path, line number), each file read once.

    UTF-8 files (nearly all) are split as bytes and only the lines asked for are decoded,
    which keeps the baseline and SARIF cheap on big trees. A file is read again if its size
    or modification time changed, so a long-lived process never keys findings by an old
    version of a file.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int] | None, list[str] | list[bytes]]] = {}

    def remember(self, path: str, text: str) -> None:
        """Register source that is not on disk (``corral check -`` reads stdin)."""
        self._files[path] = (None, split_lines(text))

    def forget_remembered(self) -> None:
        self._files = {k: v for k, v in self._files.items() if v[0] is not None}

    def text(self, path: str, line: int, upto: int = 0) -> str:
        """Line ``line`` of ``path``; ``upto`` (the last line the caller needs) saves splitting
        the rest of a big file."""
        lines = self._lines(path, max(line, upto))
        if not 0 < line <= len(lines):
            return ""
        raw = lines[line - 1]
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        return normalise(raw)

    def _lines(self, path: str, upto: int) -> list[str] | list[bytes]:
        cached = self._files.get(path)
        if cached is not None and cached[0] is None:
            return cached[1]
        try:
            st = os.stat(path)
        except OSError:
            return []
        version = (st.st_mtime_ns, st.st_size)
        if cached is not None and cached[0] == version and len(cached[1]) > upto:
            return cached[1]
        lines = self._read(path, upto)
        self._files[path] = (version, lines)
        return lines

    @staticmethod
    def _read(path: str, upto: int) -> list[str] | list[bytes]:
        try:
            data = read_regular(path, MAX_SOURCE_BYTES)
        except OSError:
            return []
        if b"\r" not in data and _is_utf8(data):
            # split no further than needed: the last element holds the (unused) rest
            return data.removeprefix(codecs.BOM_UTF8).split(b"\n", upto)
        text = decode(data)
        return [] if isinstance(text, Unreadable) else split_lines(text)


def _is_utf8(data: bytes) -> bool:
    """What the interpreter would decode as UTF-8: no coding cookie naming another codec."""
    head = data[:400]
    if b"coding" not in head:
        return True
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:  # a broken cookie: the slow path reports the file as unreadable
        return False
    return encoding in ("utf-8", "utf-8-sig")


SOURCE_LINES = SourceLines()
"""Shared by the baseline filter and the SARIF reporter so each file is read once per run."""


@dataclass(frozen=True, order=True)
class Entry:
    path: str
    code: str
    line: str
    occurrence: int

    FIELDS: ClassVar[tuple[str, ...]] = ("path", "code", "line", "occurrence")

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "line": self.line,
            "occurrence": self.occurrence,
            "path": self.path,
        }


def key_findings(
    findings: Iterable[Finding],
    lines: SourceLines,
    relpath: Callable[[str], str] = lambda p: p,
) -> list[tuple[Entry, Finding]]:
    """Each finding with its line-shift-proof key (occurrence counted in file order)."""
    seen: Counter[tuple[str, str, str]] = Counter()
    keyed: list[tuple[Entry, Finding]] = []
    relpaths: dict[str, str] = {}
    ordered = sorted(findings, key=lambda f: (f.path, f.line, f.col, f.code))
    last = {f.path: f.line for f in ordered}
    for finding in ordered:
        rel = relpaths.get(finding.path)
        if rel is None:
            rel = relpaths[finding.path] = relpath(finding.path)
        if finding.source:  # the engine kept the line: no need to read the file again
            text = normalise(finding.source)
        else:
            text = lines.text(finding.path, finding.line, last[finding.path])
        base = (rel, finding.code, text)
        keyed.append((Entry(*base, seen[base]), finding))
        seen[base] += 1
    return keyed


@dataclass
class Baseline:
    path: Path
    entries: set[Entry] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read a baseline file; a missing file is an empty baseline, a broken one an error."""
        if not os.path.lexists(path):
            return cls(path)
        where = str(path)
        try:
            data = json.loads(read_regular(path, MAX_DATA_BYTES).decode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read baseline: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: cannot read baseline: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: baseline is not valid JSON (line {exc.lineno}): {exc.msg}; "
                "regenerate it with `corral baseline`"
            ) from None
        except RecursionError:
            raise ConfigError(f"{where}: baseline is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise ConfigError(f"{where}: not a corral baseline (expected an 'entries' list)")
        version = data.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise ConfigError(
                f"{where}: baseline format version {data.get('version')!r} is not supported "
                f"(expected {FORMAT_VERSION}); regenerate it with `corral baseline`"
            )
        entries: set[Entry] = set()
        for i, raw in enumerate(data["entries"]):
            row = raw if isinstance(raw, dict) else {}
            path_, code, line, occurrence = (row.get(k) for k in Entry.FIELDS)
            if not (
                isinstance(path_, str)
                and isinstance(code, str)
                and isinstance(line, str)
                and type(occurrence) is int
                and occurrence >= 0
            ):
                raise ConfigError(
                    f"{where}: entries[{i}] must have path, code and line (strings) and "
                    "occurrence (a whole number from 0)"
                )
            entries.add(Entry(path_, code, line, occurrence))
        return cls(path, entries)

    def save(self, catalogue_version: str, root: Path) -> None:
        """Sorted, one key per line, mode 0644: reviewable in a pull request diff. Written
        through a new temporary file inside ``root``, never through a symlink."""
        payload = {
            "catalogue": catalogue_version,
            "entries": [entry.to_dict() for entry in sorted(self.entries)],
            "version": FORMAT_VERSION,
        }
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        try:
            if not inside(self.path.parent, root):
                raise UnsafePath(self.path, f"outside the project {root}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(self.path, text.encode("utf-8"), root, FILE_MODE)
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: cannot write baseline: {exc.strerror or exc}"
            ) from None

    def by_code(self) -> Counter[str]:
        return Counter(entry.code for entry in self.entries)


def project_relpath(project: Project) -> Callable[[str], str]:
    """Path relative to the project root without resolving symlinks when it is plainly
    inside (resolving every path costs more than the rest of the baseline on a big tree)."""
    root = str(project.config.root) + os.sep

    def relpath(path: str) -> str:
        absolute = os.path.abspath(path)
        if absolute.startswith(root):
            return absolute[len(root) :].replace(os.sep, "/")
        return Path(path).as_posix()  # outside the project: as given, like Project.relative

    return relpath


class Scope:
    """Which baseline entries a run is responsible for: those under the paths it checked.

    ``corral check one.py`` (as pre-commit runs it) must not call every other entry stale.
    """

    def __init__(self, project: Project, paths: Sequence[Path]) -> None:
        self.root = str(project.config.root)
        self.starts = [os.path.abspath(p) for p in paths]

    def covers(self, entry: Entry) -> bool:
        where = os.path.abspath(os.path.join(self.root, entry.path))
        return any(where == s or where.startswith(s.rstrip(os.sep) + os.sep) for s in self.starts)


@dataclass
class Split:
    new: list[Finding]
    matched: list[Entry]
    stale: list[Entry]


def split(
    baseline: Baseline, findings: Sequence[Finding], project: Project, paths: Sequence[Path]
) -> Split:
    """Separate new findings from baselined ones, and find the entries nothing matches."""
    keyed = key_findings(findings, SOURCE_LINES, project_relpath(project))
    scope = Scope(project, paths)
    new = [finding for entry, finding in keyed if entry not in baseline.entries]
    current = {entry for entry, _ in keyed}
    matched = sorted(e for e in baseline.entries if e in current)
    stale = sorted(e for e in baseline.entries if e not in current and scope.covers(e))
    return Split(sorted(new), matched, stale)


def add_baseline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="PATH",
        help=f"baseline file (default: [tool.corral] baseline, else {DEFAULT_BASELINE})",
    )


def apply_to_check(
    args: argparse.Namespace,
    project: Project,
    findings: list[Finding],
    paths: Sequence[Path],
    stdin: tuple[str, bytes] | None = None,
) -> list[Finding]:
    """``corral check`` with a baseline: only new findings remain; stale entries are reported."""
    SOURCE_LINES.forget_remembered()
    if stdin is not None:
        text = decode(stdin[1])
        SOURCE_LINES.remember(stdin[0], "" if isinstance(text, Unreadable) else text)
    if getattr(args, "no_baseline", False):
        return findings
    path = baseline_path(project, getattr(args, "baseline", None))
    if not os.path.lexists(path):
        if getattr(args, "baseline", None) is not None:
            raise ConfigError(f"baseline file not found: {path}")
        return findings
    result = split(Baseline.load(path), findings, project, paths)
    if result.stale:
        print(f"stale: {len(result.stale)}, run corral baseline --prune", file=sys.stderr)
    return result.new
