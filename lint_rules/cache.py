"""Results cache: findings per file content hash, one file per (catalogue, configuration).

Results are keyed by content, never by mtime, so a cached entry is valid wherever the content
appears; path-dependent filters (per-rule allow, baseline) are applied after the cache. Like
git's index, a (size, mtime) stat record per path saves re-reading a file whose stat is
unchanged, except for files modified within the last seconds before the cache was written
(the "racy" window, where an mtime cannot prove the content is unchanged).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .findings import Finding

__all__ = ["ResultCache", "content_hash"]

CACHE_FORMAT = 5
RACY_SECONDS = 2.0


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _facts(f: Finding) -> tuple[str, str, str]:
    return f.qualname, f.kind, f.evades


class ResultCache:
    def __init__(self, directory: Path | None, key: str) -> None:
        self.directory = directory
        self.path = directory / f"v{CACHE_FORMAT}-{key}.json" if directory else None
        self.entries: dict[str, list[list[object]]] = {}
        # per content hash: [exports, imports] for the project-wide subclass index
        self.facts: dict[str, list[Any]] = {}
        self.stats: dict[str, list[object]] = {}
        self.written_at = 0.0
        self.new_stats: dict[str, list[object]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text("utf-8"))
                entries, stats, facts = data["results"], data["stats"], data["facts"]
                if (
                    isinstance(entries, dict)
                    and isinstance(stats, dict)
                    and isinstance(facts, dict)
                ):
                    self.entries, self.stats, self.facts = entries, stats, facts
                    self.written_at = float(data["written_at"])
            except (OSError, ValueError, KeyError, TypeError):
                self.entries, self.stats = {}, {}  # a damaged cache is only a slower run
                self.facts = {}

    def digest_for_stat(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The content hash recorded for an unchanged (size, mtime) outside the racy window."""
        record = self.stats.get(path)
        if record is None or record[0] != size or record[1] != mtime_ns:
            return None
        if mtime_ns / 1e9 >= self.written_at - RACY_SECONDS:
            return None
        digest = record[2]
        return digest if isinstance(digest, str) and digest in self.entries else None

    def record_stat(self, path: str, size: int, mtime_ns: int, digest: str) -> None:
        self.new_stats[path] = [size, mtime_ns, digest]
        if self.stats.get(path) != [size, mtime_ns, digest]:
            self.dirty = True

    def get(self, digest: str, path: str) -> list[Finding] | None:
        rows = self.entries.get(digest)
        if rows is None:
            return None
        return [Finding(path, *row) for row in rows]  # type: ignore[arg-type]

    def put(self, digest: str, findings: list[Finding]) -> None:
        self.entries[digest] = [
            [f.line, f.col, f.code, f.message, f.end_line, f.end_col, f.source, *_facts(f)]
            for f in findings
        ]
        self.dirty = True

    def get_facts(self, digest: str) -> tuple[dict[str, list[str]], list[str]] | None:
        """(exports, imports) recorded for this content, if well formed."""
        entry = self.facts.get(digest)
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        exports, imports = entry
        if not (isinstance(exports, dict) and isinstance(imports, list)):
            return None
        return exports, imports

    def put_facts(self, digest: str, exports: dict[str, list[str]], imports: list[str]) -> None:
        if self.facts.get(digest) != [exports, imports]:
            self.facts[digest] = [exports, imports]
            self.dirty = True

    def save(self, keep: set[str]) -> None:
        """Write atomically, keeping only entries for content seen in this run."""
        if self.path is None or self.directory is None or not self.dirty:
            return
        entries = {k: v for k, v in self.entries.items() if k in keep}
        facts = {k: v for k, v in self.facts.items() if k in keep}
        payload = {
            "results": entries,
            "facts": facts,
            "stats": self.new_stats,
            "written_at": time.time(),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            marker = self.directory / ".gitignore"
            if not marker.exists():
                marker.write_text("# created by corral\n*\n")
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
