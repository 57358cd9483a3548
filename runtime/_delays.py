"""Delayed tasks of an in-memory TaskQueue: held aside until due, holding no worker.

A delayed task is accepted work: it counts in the queue's depth (so against
``capacity``) from its submit, but it waits in a heap here, not in the workers' line,
so a task that waits an hour blocks no worker for an hour. One timer task per queue,
started on the first delayed submit, moves each task into the line when it is due;
tasks cancelled meanwhile are skipped when their time comes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING

import anyio

from ._job import Job, perf_counter

if TYPE_CHECKING:
    from .queue import TaskQueue

__all__ = ["DelayLine"]


class DelayLine:
    """The queue's delayed tasks in due order, and the timer that releases them."""

    __slots__ = ("_heap", "_order", "_purge", "_queue", "_scope", "_started", "_wake", "emptied")

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()  # equal due times keep submission order
        self._wake = anyio.Event()
        self._started = False
        self._purge = False
        self._scope: anyio.CancelScope | None = None
        self.emptied = anyio.Event()
        self.emptied.set()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, job: Job, seconds: float) -> None:
        """Hold ``job`` (already counted in the depth) until ``seconds`` from now."""
        due = anyio.current_time() + seconds
        first = not self._heap or due < self._heap[0][0]
        heapq.heappush(self._heap, (due, next(self._order), job))
        self.emptied = anyio.Event() if self.emptied.is_set() else self.emptied
        if not self._started:
            self._started = True
            self._scope = anyio.CancelScope()  # stop() may come before the timer first runs
            tg = self._queue._outer_tg
            assert tg is not None  # the queue is open
            tg.start_soon(self._run, name=f"corral:{self._queue.name}:delays")
        elif first:
            self._wake.set()

    def cancelled(self) -> None:
        """A queued task was cancelled: forget cancelled entries (a drain may be waiting)."""
        if self._heap:
            self._purge = True
            self._wake.set()

    def stop(self) -> None:
        """End the timer (the queue closes); what is left is taken by ``take_all``."""
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        assert self._scope is not None
        with self._scope:
            while True:
                if self._purge:
                    self._purge = False
                    self._heap = [entry for entry in self._heap if not entry[2]._state]
                    heapq.heapify(self._heap)
                blocked = self._release_due()
                if not self._heap:
                    self.emptied.set()
                if blocked:
                    wait = 0.01
                else:
                    wait = self._heap[0][0] - anyio.current_time() if self._heap else math.inf
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                self._wake = anyio.Event()

    def _release_due(self) -> bool:
        """Move due tasks into the workers' line; True if the line had no room."""
        heap = self._heap
        now = anyio.current_time()
        while heap and heap[0][0] <= now:
            job = heap[0][2]
            if not job._state:  # still wanted: into the line, counted in depth already
                job.t_submit = perf_counter()  # the wait metric starts when it is due
                if not self._queue._line.put(job):
                    return True  # full of cancelled ghosts (or stopping): look again soon
            heapq.heappop(heap)
        return False

    def take_all(self) -> list[Job]:
        """Empty the line (the queue stops): the tasks that never became due."""
        jobs = [entry[2] for entry in self._heap]
        self._heap.clear()
        self.emptied.set()
        return jobs
