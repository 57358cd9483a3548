"""Per-group counters, kept as plain ints and read by the metrics collector at scrape time.

A group only bumps attributes on its hot path; ``open()``/``close()`` (once per group)
register it as live and fold its counts into per-name totals, so closed groups keep
their ``corral_group_items_total`` history without keeping the group alive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["GroupSample", "GroupStats", "group_samples"]

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

    def open(self) -> None:
        with _lock:
            _live[id(self)] = self
            _known_names.add(self.name)

    def close(self) -> None:
        with _lock:
            if _live.pop(id(self), None) is None:
                return
            for outcome in OUTCOMES:
                key = (self.name, outcome)
                _closed_totals[key] = _closed_totals.get(key, 0) + getattr(self, outcome)


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
        mine = [s for s in live if s.name == name]
        items = {o: totals.get((name, o), 0) + sum(getattr(s, o) for s in mine) for o in OUTCOMES}
        yield GroupSample(name, len(mine), sum(s.inflight for s in mine), items)
