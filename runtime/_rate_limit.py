"""Rate limits on task *starts*: the engine behind :func:`corral.middleware.rate_limit`.

Two limiters with one interface (``async acquire(bucket) -> seconds waited``):

- :class:`LocalLimiter`, in-process, a GCRA (generic cell rate algorithm, the "virtual
  scheduling" form of a token bucket): one float per bucket, no lock (one event loop),
  no timer. We do not use ``limits``' ``MemoryStorage`` here because it expires entries
  with ``threading.Timer`` threads, which is the raw concurrency corral exists to govern.
- :class:`RedisLimiter`, fleet-wide, on the ``limits`` library's ``RedisStorage`` with a
  moving window, so every process that shares the Redis server shares the budget. Its
  calls are blocking socket round trips, so they run on anyio's worker threads.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import anyio
from prometheus_client.core import CounterMetricFamily, Metric

__all__ = ["LocalLimiter", "RateSpec", "RedisLimiter", "ThrottleCounts", "parse_rate"]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*([a-z]+)\s*", re.IGNORECASE)


def _unit(word: str) -> str:
    """``seconds`` -> ``second``, ``mins`` -> ``min``; ``ms`` stays unknown (not minutes)."""
    word = word.lower()
    if word not in _UNITS and word.endswith("s") and len(word) > 2 and word[:-1] in _UNITS:
        return word[:-1]
    return word


class RateSpec:
    """``count`` starts per ``period`` seconds (``"20/s"``, ``"100/minute"``, ``"5/10s"``)."""

    __slots__ = ("count", "period", "text")

    def __init__(self, count: int, period: float, text: str) -> None:
        self.count = count
        self.period = period
        self.text = text

    def __repr__(self) -> str:
        return f"RateSpec({self.text!r})"


def parse_rate(text: object) -> RateSpec:
    """Parse ``"N/unit"`` or ``"N/Kunit"``; a clear ValueError names the accepted forms."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    unit = _unit(match.group(3)) if match else ""
    if match is None or unit not in _UNITS or int(match.group(1)) < 1:
        raise ValueError(
            f"corral.middleware.rate_limit: cannot read rate {text!r}; write it as "
            "'N/unit' or 'N/Kunit' with N >= 1 and unit one of s, second, m, minute, "
            "h, hour, d, day (e.g. '20/s', '100/minute', '5/10s')"
        )
    multiple = int(match.group(2)) if match.group(2) else 1
    if multiple < 1:
        raise ValueError(f"corral.middleware.rate_limit: period of {text!r} must be >= 1")
    return RateSpec(int(match.group(1)), multiple * _UNITS[unit], match.string)


class LocalLimiter:
    """GCRA per bucket: at most ``count`` starts in any ``period``, spaced when sustained.

    A bucket's state is its theoretical arrival time (TAT). A start is allowed when
    ``TAT - now <= period - interval`` (the burst tolerance), and pushes TAT one
    ``interval`` further. Waiters reserve their slot before sleeping, so concurrent
    waiters leave in order and never overshoot. Buckets whose TAT lies in the past hold
    no information and are dropped, so memory stays proportional to busy buckets.
    """

    def __init__(self, spec: RateSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = spec.period / spec.count
        self._tolerance = spec.period - self._interval
        self._tat: dict[Hashable, float] = {}
        self._clock = clock

    def reserve(self, bucket: Hashable) -> float:
        """Take the next slot of ``bucket``; return how long to wait before using it."""
        now = self._clock()
        tat = max(self._tat.get(bucket, now), now)
        wait = max(0.0, tat - self._tolerance - now)
        self._tat[bucket] = tat + self._interval
        if len(self._tat) > 1024:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        for stale in [b for b, tat in self._tat.items() if tat <= now]:
            del self._tat[stale]

    async def acquire(self, bucket: Hashable) -> float:
        wait = self.reserve(bucket)
        if wait > 0:
            await anyio.sleep(wait)
        return wait


class RedisLimiter:
    """A moving-window limit shared by every process using the same Redis server."""

    def __init__(self, spec: RateSpec, url: str, prefix: str) -> None:
        try:
            from limits import RateLimitItemPerSecond
            from limits.storage import RedisStorage
            from limits.strategies import MovingWindowRateLimiter
        except ImportError as exc:  # pragma: no cover - exercised by the extra's absence
            raise ImportError(
                "corral.middleware.rate_limit(store=RedisStore(...)) needs the 'limits' "
                "package: pip install 'corral[redis]'"
            ) from exc
        seconds = spec.period
        if seconds != int(seconds):
            raise ValueError(f"corral.middleware.rate_limit: {spec.text!r} is not whole seconds")
        self._item = RateLimitItemPerSecond(spec.count, int(seconds), namespace=prefix)
        self._limiter = MovingWindowRateLimiter(RedisStorage(url))

    def _try(self, bucket: str) -> float:
        """One round trip: 0 when a start was taken, else seconds until the window moves."""
        if self._limiter.hit(self._item, bucket):
            return 0.0
        reset = self._limiter.get_window_stats(self._item, bucket).reset_time
        return max(0.001, reset - time.time())

    async def acquire(self, bucket: Hashable) -> float:
        waited = 0.0
        name = str(bucket)
        while True:
            wait = await anyio.to_thread.run_sync(self._try, name)
            if wait == 0.0:
                return waited
            # Poll no slower than a tenth of the period: another process may free nothing
            # earlier (moving window), but a long sleep would overshoot the reset.
            wait = min(wait, max(0.001, self._item.get_expiry() / 10))
            waited += wait
            await anyio.sleep(wait)


class ThrottleCounts:
    """Throttled starts and seconds spent waiting, per (queue, task): a metrics source."""

    def __init__(self) -> None:
        self.throttled: dict[tuple[str, str], int] = {}
        self.waited: dict[tuple[str, str], float] = {}

    def record(self, queue: str, task: str, seconds: float) -> None:
        labels = (queue, task)
        self.throttled[labels] = self.throttled.get(labels, 0) + 1
        self.waited[labels] = self.waited.get(labels, 0.0) + seconds

    def metric_families(self) -> Iterable[Metric]:
        throttled = CounterMetricFamily(
            "corral_tasks_throttled",
            "Task starts delayed by a rate_limit middleware",
            labels=["queue", "task"],
        )
        waited = CounterMetricFamily(
            "corral_task_throttle_seconds",
            "Seconds task starts waited for a rate_limit middleware",
            labels=["queue", "task"],
        )
        for labels, n in list(self.throttled.items()):
            throttled.add_metric(list(labels), n)
        for labels, seconds in list(self.waited.items()):
            waited.add_metric(list(labels), seconds)
        return (throttled, waited)


def bucket_name(value: Any) -> Hashable:
    """A bucket for ``value``; unhashable keys are a TypeError naming the key function."""
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"corral.middleware.rate_limit: key= returned an unhashable {type(value).__name__}"
        ) from None
    if isinstance(value, float) and math.isnan(value):
        raise TypeError("corral.middleware.rate_limit: key= returned NaN")
    return value  # type: ignore[no-any-return]
