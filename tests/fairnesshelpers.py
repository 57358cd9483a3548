"""The fairness measurement, shared by tests/test_fairness.py and benchmarks/fairness.py.

A ticker task sleeps 1 ms in a loop and records the longest gap between its wake-ups
while a burst of CPU-only tasks runs on the same event loop. The gap is measured in this
thread's CPU time, so time the OS gives other processes on a busy machine does not count.
The test asserts a bound on it and the benchmark prints it: both measure with this code.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import corral
from prometheus_client import CollectorRegistry

__all__ = ["WORKERS", "group_burst", "longest_gap", "queue_burst", "spin"]

WORKERS = 4

Burst = Callable[[Callable[[], None]], Awaitable[None]]


async def spin(seconds: float) -> None:
    """CPU-only work that never awaits."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def longest_gap(burst: Burst) -> float:
    """Run ``burst`` next to a 1 ms ticker; the longest the ticker waited for the loop
    once ``burst`` called its argument (after submitting), in CPU seconds."""
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
    """``count`` tasks of ``seconds`` each through a TaskQueue of ``WORKERS`` workers."""
    async with corral.TaskQueue(
        "fair", workers=WORKERS, capacity=count, registry=CollectorRegistry()
    ) as q:
        for _ in range(count):
            q.submit_nowait(spin, seconds)
        submitted()


async def group_burst(submitted: Callable[[], None], count: int, seconds: float) -> None:
    """The same burst through a TaskGroup with limit ``WORKERS``."""
    async with corral.TaskGroup(limit=WORKERS, name="fair") as g:
        for _ in range(count):
            g.start_soon(spin, seconds)
        submitted()
