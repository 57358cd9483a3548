"""One Prometheus collector per registry, fed by every corral component at scrape time.

Why a single collector: prometheus_client refuses two collectors that emit the same
metric name in one registry ("Duplicated timeseries"), and every TaskQueue, TaskGroup
and store emits the same names with different labels. So each registry gets exactly one
:class:`CorralCollector`; components register themselves as *sources* and yield their
metric families when Prometheus scrapes. The hot path therefore pays nothing for gauges
(they are read at scrape time) and only plain integer increments for counters and
histogram buckets (:class:`Buckets`), which sources turn into families here.

Plugging in a component::

    class MySource:
        def metric_families(self) -> Iterable[Metric]:
            g = GaugeMetricFamily("corral_groups_active", "Open task groups", labels=["group"])
            g.add_metric(["fetch"], 3)
            yield g

    metrics.collector_for(registry).add_source(my_source)   # held weakly by default

Families with the same name from several sources are merged into one family; samples
with identical labels are summed (two queues that share a name read as one queue).
"""

from __future__ import annotations

import logging
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_le: Callable[[float], str] = floatToGoString  # untyped upstream

__all__ = [
    "DURATION_BUCKETS",
    "Buckets",
    "CorralCollector",
    "MetricsSource",
    "collector_for",
    "histogram_family",
]

_log = logging.getLogger("corral.metrics")

#: Bucket upper bounds (seconds) for task durations and waits: sub-millisecond no-op work
#: up to minute-long jobs.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@runtime_checkable
class MetricsSource(Protocol):
    """Anything that can describe its current state as Prometheus metric families."""

    def metric_families(self) -> Iterable[Metric]: ...


class Buckets:
    """A histogram kept as a plain bucket array: ``observe`` is one bisect and two adds.

    Not thread-safe by design: each instance belongs to one event loop (or one worker),
    and the collector aggregates instances at scrape time.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last slot: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: Buckets) -> None:
        """Add ``other``'s observations (same bounds) into this array."""
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different bucket bounds")
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total


def histogram_family(
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    rows: Iterable[tuple[Sequence[str], Buckets]],
) -> HistogramMetricFamily:
    """Build a histogram family from ``(label values, Buckets)`` rows."""
    family = HistogramMetricFamily(name, documentation, labels=list(labelnames))
    for labelvalues, buckets in rows:
        cumulative = 0
        points: list[tuple[str, float]] = []
        for bound, n in zip(buckets.bounds, buckets.counts[:-1], strict=True):
            cumulative += n
            points.append((_le(bound), cumulative))
        cumulative += buckets.counts[-1]
        points.append(("+Inf", cumulative))
        family.add_metric(list(labelvalues), points, sum_value=buckets.total)
    return family


class CorralCollector(Collector):
    """The registry's single corral collector: merges the families of all live sources."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[int, Callable[[], MetricsSource | None]] = {}

    def add_source(self, source: MetricsSource, *, weak: bool = True) -> None:
        """Scrape ``source`` from now on; a weak source drops out when garbage collected."""
        if not callable(getattr(source, "metric_families", None)):
            raise TypeError(
                f"metrics source {source!r} has no metric_families() method "
                "(see corral.metrics.MetricsSource)"
            )
        ref: Callable[[], MetricsSource | None]
        if weak:
            # No weakref callback: it could run inside a garbage collection triggered
            # while this thread holds the lock. Dead entries are pruned on the next scrape.
            ref = weakref.ref(source)
        else:

            def ref() -> MetricsSource:
                return source

        with self._lock:
            self._sources[id(source)] = ref

    def remove_source(self, source: MetricsSource) -> None:
        """Stop scraping ``source`` (no error if it was never added)."""
        with self._lock:
            ref = self._sources.get(id(source))
            if ref is not None and ref() is source:
                del self._sources[id(source)]

    def describe(self) -> Iterable[Metric]:
        # Empty on purpose: names are owned by corral, and describing would force a
        # collect() at registration time, before any source exists.
        return ()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            for dead in [k for k, ref in self._sources.items() if ref() is None]:
                del self._sources[dead]
            refs = list(self._sources.values())
        merged: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for ref in refs:
            source = ref()
            if source is None:
                continue
            try:
                families = list(source.metric_families())
            except Exception:
                _log.exception("metrics source %r failed; its metrics are skipped", source)
                continue
            for family in families:
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                    values[family.name] = {}
                elif target.type != family.type:
                    _log.warning(
                        "metric %s emitted as %s and %s; keeping the first",
                        family.name,
                        target.type,
                        family.type,
                    )
                    continue
                table = values[family.name]
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    table[key] = table.get(key, 0.0) + sample.value
        for name, family in merged.items():
            family.samples = [
                Sample(sample_name, dict(labels), value)
                for (sample_name, labels), value in values[name].items()
            ]
            yield family


_collectors_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, CorralCollector] = (
    weakref.WeakKeyDictionary()
)


def collector_for(registry: CollectorRegistry | None = None) -> CorralCollector:
    """The corral collector of ``registry`` (default: the process-wide REGISTRY), created once."""
    target = REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(target)
        if collector is None:
            collector = CorralCollector()
            target.register(collector)
            _collectors[target] = collector
    return collector
