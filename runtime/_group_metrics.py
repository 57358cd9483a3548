"""Per-group counters, kept as plain ints and read by the metrics collector at scrape time.

A group only bumps attributes on its hot path; ``open()``/``close()`` (once per group)
register it as live and fold its counts into per-name totals, so closed groups keep
their ``corral_group_items_total`` history without keeping the group alive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["GroupSample", "GroupStats", "ThreadGroupStats", "WorkerCounts", "group_samples"]

OUTCOMES = ("success", "error", "cancelled")

_lock = threading.Lock()
_live: dict[int, GroupStats] = {}
_closed_totals: dict[tuple[str, str], int] = {}
_known_names: set[str] = set()


class GroupStats:
    """Counters of one group. Written by the group's own thread or event loop only."""

    __slots__ = ("cancelled", "error", "inflight", "interrupted", "kind", "name", "success")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.inflight = 0
        self.success = 0
        self.error = 0
        self.cancelled = 0
        self.interrupted = 0  # cancelled by the group itself (error, timeout, outer scope)

    def snapshot(self) -> tuple[int, dict[str, int]]:
        """(items in flight, items finished by outcome), read at scrape time."""
        return self.inflight, {o: getattr(self, o) for o in OUTCOMES}

    def open(self) -> None:
        with _lock:
            _live[id(self)] = self
            _known_names.add(self.name)

    def close(self) -> None:
        with _lock:
            if _live.pop(id(self), None) is None:
                return
            _inflight, items = self.snapshot()
            for outcome, count in items.items():
                key = (self.name, outcome)
                _closed_totals[key] = _closed_totals.get(key, 0) + count


class WorkerCounts:
    """Counters owned by one worker thread: plain ints, no lock, summed at scrape time."""

    __slots__ = ("cancelled", "error", "success")

    def __init__(self) -> None:
        self.success = 0
        self.error = 0
        self.cancelled = 0


class ThreadGroupStats(GroupStats):
    """Stats of a thread-pool group: the owner's fields (written under the owner's lock:
    ``inflight`` counts submissions, ``cancelled`` the items dropped before they ran) plus
    one :class:`WorkerCounts` per worker thread."""

    __slots__ = ("parts",)

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(name, kind)
        self.parts: list[WorkerCounts] = []

    def snapshot(self) -> tuple[int, dict[str, int]]:
        items = {o: getattr(self, o) for o in OUTCOMES}
        for part in list(self.parts):
            items["success"] += part.success
            items["error"] += part.error
            items["cancelled"] += part.cancelled
        finished_by_workers = sum(items.values()) - self.cancelled - self.success - self.error
        return max(self.inflight - finished_by_workers, 0), items


@dataclass(frozen=True)
class GroupSample:
    """What the collector exports for one group name."""

    name: str
    active: int
    inflight: int
    items: dict[str, int]


def group_samples() -> Iterator[GroupSample]:
    """Aggregate live and closed groups by name (called at scrape time)."""
    with _lock:
        live = list(_live.values())
        names = sorted(_known_names)
        totals = dict(_closed_totals)
    for name in names:
        snapshots = [s.snapshot() for s in live if s.name == name]
        items = {o: totals.get((name, o), 0) for o in OUTCOMES}
        for _inflight, counts in snapshots:
            for outcome, count in counts.items():
                items[outcome] += count
        yield GroupSample(name, len(snapshots), sum(i for i, _c in snapshots), items)
