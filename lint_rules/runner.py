"""Check many files: cache lookups and the prefilter in this process, parsing in a pool.

Only files that pass the text prefilter are parsed, and those are spread over worker
processes largest first, so one big file does not serve as the critical path at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from .cache import ResultCache, content_hash
from .engine import check_bytes
from .findings import Finding
from .ruleset import RuleSet
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
    pending: list[tuple[str, str, bytes]] = []
    seen_hashes: set[str] = set()
    for shown, path in files:
        result.files += 1
        key = os.path.abspath(path)
        try:
            st = os.stat(key)
            known = cache.digest_for_stat(key, st.st_size, st.st_mtime_ns)
            if known is not None:
                seen_hashes.add(known)
                cache.record_stat(key, st.st_size, st.st_mtime_ns, known)
                result.cached += 1
                result.findings.extend(cache.get(known, shown) or [])
                continue
            data = path.read_bytes()
        except OSError as exc:
            result.findings.append(
                Finding(shown, 1, 1, "CRL901", f"cannot read: {exc.strerror or exc}")
            )
            continue
        digest = content_hash(data)
        seen_hashes.add(digest)
        cache.record_stat(key, st.st_size, st.st_mtime_ns, digest)
        cached = cache.get(digest, shown)
        if cached is not None:
            result.cached += 1
            result.findings.extend(cached)
            continue
        if _needs_parse(data, rules, key) or (
            not data.isascii() and isinstance(decode(data), Unreadable)
        ):
            pending.append((shown, digest, data))
        else:
            cache.put(digest, [])
    result.parsed = len(pending)
    pending.sort(key=lambda item: len(item[2]), reverse=True)
    workers = jobs if jobs is not None else default_jobs()
    total = sum(len(item[2]) for item in pending)
    if workers > 1 and len(pending) > 1 and total >= PARALLEL_MIN_BYTES:
        outcomes = _parallel(pending, rules, strict, workers)
    else:
        outcomes = [check_bytes(data, shown, rules, strict=strict) for shown, _, data in pending]
    for (_, digest, _), findings in zip(pending, outcomes, strict=True):
        cache.put(digest, findings)
        result.findings.extend(findings)
    cache.save(seen_hashes)
    result.findings.sort()
    return result


_MARKERS = tuple(marker.encode() for marker in MARKERS)


def _needs_parse(data: bytes, rules: RuleSet, path: str) -> bool:
    return rules.may_match(data, path) or any(marker in data for marker in _MARKERS)


def _parallel(
    pending: list[tuple[str, str, bytes]], rules: RuleSet, strict: bool, workers: int
) -> list[list[Finding]]:
    method = "fork" if "fork" in _start_methods() else "spawn"
    with ProcessPoolExecutor(
        max_workers=min(workers, len(pending)),
        mp_context=get_context(method),
        initializer=_init_worker,
        initargs=(rules, strict),
    ) as pool:
        return list(pool.map(_check_in_worker, [(shown, data) for shown, _, data in pending]))


def _start_methods() -> list[str]:
    from multiprocessing import get_all_start_methods

    return get_all_start_methods()
