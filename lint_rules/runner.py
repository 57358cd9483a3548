"""Check many files: cache lookups and the prefilter in this process, parsing in a pool.

Only files that pass the text prefilter are parsed. Once there is enough work to pay for
them, candidates stream to worker processes while this process keeps reading and hashing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from .cache import ResultCache, content_hash
from .engine import check_bytes
from .findings import Finding
from .ruleset import RuleSet
from .safeio import MAX_SOURCE_BYTES, read_regular
from .source import Unreadable, decode
from .suppressions import MARKERS

__all__ = ["CheckResult", "check_files"]

PARALLEL_MIN_BYTES = 256 * 1024

_worker_rules: RuleSet | None = None
_worker_strict = False


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    parsed: int = 0
    cached: int = 0


def _init_worker(rules: RuleSet, strict: bool) -> None:
    global _worker_rules, _worker_strict
    _worker_rules, _worker_strict = rules, strict


def _check_in_worker(job: tuple[str, bytes]) -> list[Finding]:
    assert _worker_rules is not None
    return check_bytes(job[1], job[0], _worker_rules, strict=_worker_strict)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_files(
    files: Iterable[tuple[str, Path]],
    rules: RuleSet,
    cache: ResultCache,
    *,
    strict: bool = False,
    jobs: int | None = None,
) -> CheckResult:
    """``files`` are (display path, filesystem path) pairs."""
    result = CheckResult()
    seen_hashes: set[str] = set()
    workers = jobs if jobs is not None else default_jobs()
    with _Dispatcher(rules, strict, workers) as dispatcher:
        for shown, path in files:
            _check_one(shown, path, rules, cache, result, seen_hashes, dispatcher)
        for digest, findings in dispatcher.results():
            cache.put(digest, findings)
            result.findings.extend(findings)
    cache.save(seen_hashes)
    result.findings.sort()
    return result


class _Dispatcher:
    """Parses candidates inline until there is enough work to pay for worker processes, then
    streams them to a pool while this process goes on reading and hashing the rest."""

    def __init__(self, rules: RuleSet, strict: bool, workers: int) -> None:
        self.rules, self.strict, self.workers = rules, strict, workers
        self.buffered: list[tuple[str, str, bytes]] = []
        self.buffered_bytes = 0
        self.pool: ProcessPoolExecutor | None = None
        self.futures: list[tuple[str, str, bytes, Future[list[Finding]]]] = []
        self.done: list[tuple[str, list[Finding]]] = []

    def __enter__(self) -> _Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, shown: str, digest: str, data: bytes) -> None:
        if self.pool is not None:
            try:
                future = self.pool.submit(_check_in_worker, (shown, data))
            except BrokenProcessPool:  # a worker died: its files are retried in results()
                self.pool.shutdown(wait=False)
                self.pool = self._new_pool(self.workers)
                future = self.pool.submit(_check_in_worker, (shown, data))
            self.futures.append((shown, digest, data, future))
            return
        self.buffered.append((shown, digest, data))
        self.buffered_bytes += len(data)
        if self.workers > 1 and self.buffered_bytes >= PARALLEL_MIN_BYTES:
            self.pool = self._new_pool(self.workers)
            buffered, self.buffered = self.buffered, []
            for item in sorted(buffered, key=lambda b: len(b[2]), reverse=True):
                self.submit(*item)

    def results(self) -> list[tuple[str, list[Finding]]]:
        for shown, digest, data in self.buffered:
            self.done.append((digest, check_bytes(data, shown, self.rules, strict=self.strict)))
        self.buffered = []
        for shown, digest, data, future in self.futures:
            try:
                self.done.append((digest, future.result()))
            except BrokenProcessPool:
                self.done.append((digest, self._alone(shown, data)))
        return self.done

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context(method),
            initializer=_init_worker,
            initargs=(self.rules, self.strict),
        )

    def _alone(self, shown: str, data: bytes) -> list[Finding]:
        """A worker died: every file it had not finished is checked again in a process of
        its own, so a file that kills its checker costs only itself (CRL901), never the run."""
        with self._new_pool(1) as pool:
            try:
                return pool.submit(_check_in_worker, (shown, data)).result()
            except BrokenProcessPool:
                reason = "the checker process died while checking this file"
                return [Finding(shown, 1, 1, "CRL901", f"cannot check: {reason}")]


def _check_one(
    shown: str,
    path: Path,
    rules: RuleSet,
    cache: ResultCache,
    result: CheckResult,
    seen_hashes: set[str],
    dispatcher: _Dispatcher,
) -> None:
    result.files += 1
    key = str(path)
    try:
        st = os.stat(key)
        known = cache.digest_for_stat(key, st.st_size, st.st_mtime_ns)
        if known is not None:
            seen_hashes.add(known)
            cache.record_stat(key, st.st_size, st.st_mtime_ns, known)
            result.cached += 1
            result.findings.extend(cache.get(known, shown) or [])
            return
        data = read_regular(key, MAX_SOURCE_BYTES)
    except OSError as exc:
        result.findings.append(
            Finding(shown, 1, 1, "CRL901", f"cannot read: {exc.strerror or exc}")
        )
        return
    digest = content_hash(data)
    seen_hashes.add(digest)
    cache.record_stat(key, st.st_size, st.st_mtime_ns, digest)
    cached = cache.get(digest, shown)
    if cached is not None:
        result.cached += 1
        result.findings.extend(cached)
        return
    if _needs_parse(data, rules, key):
        result.parsed += 1
        dispatcher.submit(shown, digest, data)
    else:
        cache.put(digest, [])


def _needs_parse(data: bytes, rules: RuleSet, path: str) -> bool:
    """Decode first (any declared encoding, utf-7 included), then prefilter the text: a file
    that cannot be decoded goes on to be reported as CRL901 whatever it contains."""
    text = decode(data)
    if isinstance(text, Unreadable):
        return True
    return rules.may_match(text, path) or any(marker in text for marker in MARKERS)
