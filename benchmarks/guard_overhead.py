"""What corral.guard costs: a raw create_task in count mode, and corral's own paths.

Each contender runs with the guard off and on (count mode) in the same process, back to back,
``--repeat`` pairs; the cost is the median over pairs of guarded CPU time / unguarded CPU time
(process CPU time, so the time the process waits for a core on a busy machine is left out).

    python benchmarks/guard_overhead.py [--tasks 50000] [--items 100000] [--repeat 5]

Targets (issue 15): a raw ``asyncio.create_task`` costs at most 1.3x its unguarded time;
corral's TaskQueue and TaskGroup cost nothing extra (ratio ~1.0) and are never reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import corral
from corral import guard


async def noop() -> None:
    pass


async def raw_create_task(n: int) -> None:
    tasks = [
        asyncio.create_task(noop())  # corral: allow[CRL201] reason="the spawn being measured"
        for _ in range(n)
    ]
    for task in tasks:
        await task


async def corral_queue(n: int) -> None:
    async with corral.TaskQueue("bench", workers=16, capacity=n) as q:
        for _ in range(n):
            q.submit_nowait(noop)


async def corral_group(n: int) -> None:
    async with corral.TaskGroup(limit=16) as g:
        for _ in range(n):
            g.start_soon(noop)


def timed(fn: Callable[[int], Awaitable[None]], n: int, guarded: bool) -> tuple[float, int]:
    async def main() -> tuple[float, int]:
        g = guard.install("count", metrics=False) if guarded else None
        try:
            start = time.process_time()  # CPU time: a busy machine's waits do not count
            await fn(n)
            elapsed = time.process_time() - start
        finally:
            if g is not None:
                g.uninstall()
        return elapsed, 0 if g is None else g.total

    return asyncio.run(main())


def compare(name: str, fn: Callable[[int], Awaitable[None]], n: int, repeat: int) -> float:
    """Run unguarded and guarded back to back ``repeat`` times (alternating which goes first);
    the cost is the median of the pairs' ratios, which a busy machine disturbs less than a
    ratio of two separate minimums."""
    ratios: list[float] = []
    best = {False: float("inf"), True: float("inf")}
    reports = 0
    for i in range(repeat):
        times: dict[bool, float] = {}
        for guarded in (False, True) if i % 2 == 0 else (True, False):
            times[guarded], got = timed(fn, n, guarded)
            reports = max(reports, got)
            best[guarded] = min(best[guarded], times[guarded])
        ratios.append(times[True] / times[False])
    ratio = statistics.median(ratios)
    print(
        f"{name:<18} unguarded {n / best[False]:>9,.0f}/s  guarded {n / best[True]:>9,.0f}/s"
        f"  cost {ratio:.2f}x median of {repeat} pairs, {best[True] / best[False]:.2f}x best"
        f" vs best  raw spawns reported: {reports}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[0]}, python {sys.version.split()[0]}")
    raw = compare("raw create_task", raw_create_task, args.tasks, args.repeat)
    queue = compare("corral.TaskQueue", corral_queue, args.items, args.repeat)
    group = compare("corral.TaskGroup", corral_group, args.items, args.repeat)
    print(
        f"targets: raw <= 1.30x ({'ok' if raw <= 1.3 else 'MISSED'}); "
        f"corral paths ~1.0x (queue {queue:.2f}x, group {group:.2f}x)"
    )


if __name__ == "__main__":
    main()
