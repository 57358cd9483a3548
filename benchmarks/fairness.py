"""Fairness: the longest a ticker task waits for the event loop during a burst of tasks.

A ticker sleeps 1 ms in a loop and records the longest gap between its wake-ups while 4
workers of a TaskQueue (and of a TaskGroup with limit 4) run a burst of CPU-only tasks
(they never await) of 5 us to 1 ms each. Target: at most 50 ms on both backends. For
comparison the same burst runs on ``asyncio.TaskGroup`` + ``Semaphore(4)``, where every
task is a task of its own (on asyncio only). Usage: ``python benchmarks/fairness.py
[--seconds 0.5]`` (work per burst).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import corral
from prometheus_client import CollectorRegistry

DURATIONS = (0.000005, 0.00005, 0.0002, 0.001)
WORKERS = 4


async def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def longest_gap(burst: Callable[[Callable[[], None]], Awaitable[None]]) -> float:
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
        "fair", workers=WORKERS, capacity=count, registry=CollectorRegistry()
    ) as q:
        for _ in range(count):
            q.submit_nowait(spin, seconds)
        submitted()


async def group_burst(submitted: Callable[[], None], count: int, seconds: float) -> None:
    async with corral.TaskGroup(limit=WORKERS, name="fair") as g:
        for _ in range(count):
            g.start_soon(spin, seconds)
        submitted()


async def asyncio_burst(submitted: Callable[[], None], count: int, seconds: float) -> None:
    limit = asyncio.Semaphore(WORKERS)

    async def one() -> None:
        async with limit:
            await spin(seconds)

    async with asyncio.TaskGroup() as tg:
        for _ in range(count):
            tg.create_task(one())
        submitted()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU work per burst")
    options = parser.parse_args()
    print(
        "longest gap a 1 ms ticker saw after the submits (ms of CPU time), "
        f"{WORKERS} workers, bursts of {options.seconds} s"
    )
    print(f"{'task':>8} {'backend':>8} {'TaskQueue':>10} {'TaskGroup':>10} {'TG+Sem':>8}")
    worst = 0.0
    for seconds in DURATIONS:
        work = {"count": max(1, int(options.seconds / seconds)), "seconds": seconds}
        for backend in ("asyncio", "trio"):
            q = anyio.run(longest_gap, partial(queue_burst, **work), backend=backend)
            g = anyio.run(longest_gap, partial(group_burst, **work), backend=backend)
            worst = max(worst, q, g)
            peer = "-"
            if backend == "asyncio":
                gap = anyio.run(longest_gap, partial(asyncio_burst, **work))
                peer = f"{gap * 1000:.1f}"
            row = f"{seconds * 1e6:>6.0f}us {backend:>8} {q * 1000:>10.1f} {g * 1000:>10.1f}"
            print(f"{row} {peer:>8}")
    print(f"worst corral gap: {worst * 1000:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
