"""Results cache: findings per file content hash, one file per (catalogue, configuration).

Keyed by content rather than mtime so a checkout, a touch or a clock skew never serves stale
results; hashing is far cheaper than parsing. Path-dependent filters (per-rule allow, baseline)
are applied after the cache, so a cached entry is valid wherever the content appears.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .findings import Finding

__all__ = ["ResultCache", "content_hash"]

CACHE_FORMAT = 1


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ResultCache:
    def __init__(self, directory: Path | None, key: str) -> None:
        self.directory = directory
        self.path = directory / f"v{CACHE_FORMAT}-{key}.json" if directory else None
        self.entries: dict[str, list[list[object]]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text("utf-8"))
                if isinstance(data, dict):
                    self.entries = data
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is only a slower run

    def get(self, digest: str, path: str) -> list[Finding] | None:
        rows = self.entries.get(digest)
        if rows is None:
            return None
        return [Finding(path, *row) for row in rows]  # type: ignore[arg-type]

    def put(self, digest: str, findings: list[Finding]) -> None:
        self.entries[digest] = [
            [f.line, f.col, f.code, f.message, f.end_line, f.end_col] for f in findings
        ]
        self.dirty = True

    def save(self, keep: set[str]) -> None:
        """Write atomically, keeping only entries for content seen in this run."""
        if self.path is None or self.directory is None or not self.dirty:
            return
        entries = {k: v for k, v in self.entries.items() if k in keep}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            marker = self.directory / ".gitignore"
            if not marker.exists():
                marker.write_text("# created by corral\n*\n")
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                json.dump(entries, handle, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
