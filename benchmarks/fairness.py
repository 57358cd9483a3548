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
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio

# The measurement is the one tests/test_fairness.py asserts on: one piece of code.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fairnesshelpers import WORKERS, group_burst, longest_gap, queue_burst, spin

DURATIONS = (0.000005, 0.00005, 0.0002, 0.001)


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
