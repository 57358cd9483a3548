"""Group metrics: per-group plain-int counters, exported by one source per registry.

A group only bumps attributes on its hot path. ``open()``/``close()`` (once per group)
register it with the :class:`GroupBook` of its registry, which folds a closed group's
counts into per-name totals, so ``corral_group_items_total`` keeps its history without
keeping the group alive. The book is a :mod:`corral.metrics` source: everything is read
at scrape time.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .metrics import collector_for

__all__ = [
    "GroupBook",
    "GroupSample",
    "GroupStats",
    "ThreadGroupStats",
    "WorkerCounts",
    "book_for",
]

OUTCOMES = ("success", "error", "cancelled")


class GroupStats:
    """Counters of one group. Written by the group's own event loop only."""

    __slots__ = ("book", "cancelled", "error", "inflight", "interrupted", "name", "success")

    def __init__(self, name: str) -> None:
        self.name = name
        self.inflight = 0
        self.success = 0
        self.error = 0
        self.cancelled = 0
        self.interrupted = 0  # cancelled by the group itself (error, timeout, outer scope)
        self.book: GroupBook | None = None

    def snapshot(self) -> tuple[int, dict[str, int]]:
        """(items queued or running, items finished by outcome), read at scrape time."""
        return self.inflight, {o: getattr(self, o) for o in OUTCOMES}

    def open(self, registry: CollectorRegistry | None) -> None:
        self.book = book_for(registry)
        self.book.open(self)

    def close(self) -> None:
        if self.book is not None:
            self.book.close(self)


class WorkerCounts:
    """Counters owned by one worker thread: plain ints, no lock, summed at scrape time."""

    __slots__ = ("cancelled", "error", "success")

    def __init__(self) -> None:
        self.success = 0
        self.error = 0
        self.cancelled = 0


class ThreadGroupStats(GroupStats):
    """Stats of a thread-pool group: the owner's fields (written under the owner's lock:
    ``inflight`` counts accepted items, ``cancelled`` the items dropped before they ran)
    plus one :class:`WorkerCounts` per worker thread."""

    __slots__ = ("parts",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.parts: list[WorkerCounts] = []

    def snapshot(self) -> tuple[int, dict[str, int]]:
        items = {o: getattr(self, o) for o in OUTCOMES}
        finished_by_workers = 0
        for part in list(self.parts):
            items["success"] += part.success
            items["error"] += part.error
            items["cancelled"] += part.cancelled
            finished_by_workers += part.success + part.error + part.cancelled
        return max(self.inflight - finished_by_workers, 0), items


@dataclass(frozen=True)
class GroupSample:
    """What is exported for one group name."""

    name: str
    active: int
    inflight: int
    items: dict[str, int]


class GroupBook:
    """Every group reporting to one registry: the live ones and totals of closed ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, GroupStats] = {}
        self._closed_totals: dict[tuple[str, str], int] = {}
        self._names: set[str] = set()

    def open(self, stats: GroupStats) -> None:
        with self._lock:
            self._live[id(stats)] = stats
            self._names.add(stats.name)

    def close(self, stats: GroupStats) -> None:
        with self._lock:
            if self._live.pop(id(stats), None) is None:
                return
            _inflight, items = stats.snapshot()
            for outcome, count in items.items():
                key = (stats.name, outcome)
                self._closed_totals[key] = self._closed_totals.get(key, 0) + count

    def samples(self) -> Iterator[GroupSample]:
        """Live and closed groups aggregated by name."""
        with self._lock:
            live = list(self._live.values())
            names = sorted(self._names)
            totals = dict(self._closed_totals)
        for name in names:
            snapshots = [s.snapshot() for s in live if s.name == name]
            items = {o: totals.get((name, o), 0) for o in OUTCOMES}
            for _inflight, counts in snapshots:
                for outcome, count in counts.items():
                    items[outcome] += count
            yield GroupSample(name, len(snapshots), sum(i for i, _c in snapshots), items)

    def metric_families(self) -> Iterable[Metric]:
        active = GaugeMetricFamily(
            "corral_groups_active", "Open TaskGroups (async and sync) by name", labels=["group"]
        )
        inflight = GaugeMetricFamily(
            "corral_group_inflight", "Items queued or running in open TaskGroups", labels=["group"]
        )
        items = CounterMetricFamily(
            "corral_group_items_total",
            "TaskGroup items finished, by outcome (success, error, cancelled)",
            labels=["group", "outcome"],
        )
        for sample in self.samples():
            active.add_metric([sample.name], sample.active)
            inflight.add_metric([sample.name], sample.inflight)
            for outcome, count in sample.items.items():
                items.add_metric([sample.name, outcome], count)
        return (active, inflight, items)


_books_lock = threading.Lock()
_books: weakref.WeakKeyDictionary[CollectorRegistry, GroupBook] = weakref.WeakKeyDictionary()
_default_book: GroupBook | None = None


def book_for(registry: CollectorRegistry | None) -> GroupBook:
    """The group book of ``registry`` (default: the process-wide one), created once."""
    global _default_book
    with _books_lock:
        if registry is None:
            if _default_book is None:
                _default_book = GroupBook()
                collector_for(None).add_source(_default_book, weak=False)
            return _default_book
        book = _books.get(registry)
        if book is None:
            book = _books[registry] = GroupBook()
            collector_for(registry).add_source(book, weak=False)
        return book
