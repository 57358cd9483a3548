"""Fairness: after a burst of CPU-only tasks, no other task waits long for the event loop.

A ticker task sleeps 1 ms in a loop and records the longest gap between its wake-ups
while 4 workers run a burst. The runtime gives the loop back by time (2 ms per
worker turn), so the gap stays near a few turns whatever the task duration. The bound
here is generous for a loaded 2-core machine; ``benchmarks/fairness.py`` prints the
figures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

BOUND = 0.1  # CPU seconds; the design gives about 2 x 4 workers x 2 ms


async def spin(seconds: float) -> None:
    """CPU-only work that never awaits."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def longest_gap(burst: Callable[[Callable[[], None]], Awaitable[None]]) -> float:
    """Run ``burst`` next to a 1 ms ticker; the longest the ticker waited for the loop
    once ``burst`` called its argument (after submitting). Measured in this thread's CPU
    time, so that time the OS gives other processes on a busy machine does not count."""
    clock = time.thread_time
    gap = 0.0
    last = clock()
    measuring = False
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal gap, last
        while not done.is_set():
            await anyio.sleep(0.001)
            now = clock()
            if measuring:
                gap = max(gap, now - last)
            last = now

    def submitted() -> None:
        nonlocal measuring, last
        measuring = True
        last = clock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        try:
            await burst(submitted)
        finally:
            done.set()
    return gap


async def queue_burst(submitted: Callable[[], None], count: int, seconds: float) -> None:
    async with corral.TaskQueue(
        "fair", workers=4, capacity=count, registry=CollectorRegistry()
    ) as q:
        for _ in range(count):
            q.submit_nowait(spin, seconds)
        submitted()


async def group_burst(submitted: Callable[[], None], count: int, seconds: float) -> None:
    async with corral.TaskGroup(limit=4, name="fair") as g:
        for _ in range(count):
            g.start_soon(spin, seconds)
        submitted()


CASES = [
    pytest.param(queue_burst, 40_000, 0.000005, id="queue-5us"),
    pytest.param(queue_burst, 1_000, 0.0005, id="queue-500us"),
    pytest.param(group_burst, 40_000, 0.000005, id="group-5us"),
    pytest.param(group_burst, 1_000, 0.0005, id="group-500us"),
]


@pytest.mark.parametrize(("burst", "count", "seconds"), CASES)
async def test_a_burst_never_holds_the_loop_long(burst: Any, count: int, seconds: float) -> None:
    gap = await longest_gap(lambda submitted: burst(submitted, count, seconds))
    assert gap < BOUND, f"the ticker waited {gap * 1000:.0f} ms for the event loop"
