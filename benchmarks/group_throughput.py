"""Throughput of structured fan-out with a limit: corral.TaskGroup against its peers.

100,000 no-op items with limit 16, every contender measured in the same run and on the
same event loop, best of ``--repeat`` runs; ratios are corral's items/s over the peer's.

    python benchmarks/group_throughput.py [--items 100000] [--sync-items 20000] [--repeat 3]

Targets (DESIGN.md, issue 12): >= 1x asyncio.TaskGroup + Semaphore, >= 0.5x a hand-written
pool of 16 workers draining one iterator in an asyncio.TaskGroup (context snapshot per
item), >= 5x anyio TaskGroup + CapacityLimiter, corral.sync.TaskGroup >= 0.8x
ThreadPoolExecutor.map.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor  # corral: allow[CRL102] reason="peer baseline"

import anyio
import corral
import corral.sync
import trio

LIMIT = 16


async def noop() -> None:
    pass


def sync_noop(_item: object = None) -> None:
    pass


# -- async contenders ------------------------------------------------------------------
async def corral_group(n: int) -> None:
    async with corral.TaskGroup(limit=LIMIT) as g:
        for _ in range(n):
            g.start_soon(noop)


async def asyncio_taskgroup_semaphore(n: int) -> None:
    sem = asyncio.Semaphore(LIMIT)

    async def item() -> None:
        async with sem:
            await noop()

    async with asyncio.TaskGroup() as tg:  # corral: allow[CRL204] reason="peer baseline"
        for _ in range(n):
            tg.create_task(item())


async def asyncio_worker_pool(n: int) -> None:
    """The strongest hand-written peer: ``LIMIT`` workers in an asyncio.TaskGroup drain one
    iterator of items, each item carrying the context snapshot taken when it was made.

    (Weaker isolation than corral's: only the call that creates the coroutine runs in the
    snapshot; the coroutine's steps run in the worker's context.)
    """

    def items() -> Iterator[tuple[contextvars.Context, Callable[[], Awaitable[None]]]]:
        for _ in range(n):
            yield contextvars.copy_context(), noop

    work = items()

    async def worker() -> None:
        for ctx, fn in work:
            await ctx.run(fn)

    async with asyncio.TaskGroup() as tg:  # corral: allow[CRL204] reason="peer baseline"
        for _ in range(LIMIT):
            tg.create_task(worker())


async def asyncio_gather_semaphore(n: int) -> None:
    sem = asyncio.Semaphore(LIMIT)

    async def item() -> None:
        async with sem:
            await noop()

    # corral: allow[CRL205] reason="peer baseline: the unbounded gather being replaced"
    await asyncio.gather(*[item() for _ in range(n)])


async def anyio_taskgroup_limiter(n: int) -> None:
    limiter = anyio.CapacityLimiter(LIMIT)

    async def item() -> None:
        async with limiter:
            await noop()

    async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="peer baseline"
        for _ in range(n):
            tg.start_soon(item)


async def trio_nursery_limiter(n: int) -> None:
    limiter = trio.CapacityLimiter(LIMIT)

    async def item() -> None:
        async with limiter:
            await noop()

    async with trio.open_nursery() as nursery:  # corral: allow[CRL204] reason="peer baseline"
        for _ in range(n):
            nursery.start_soon(item)


AsyncContender = Callable[[int], Awaitable[None]]

PEERS: dict[str, list[tuple[str, AsyncContender]]] = {
    "asyncio": [
        ("asyncio.TaskGroup + Semaphore", asyncio_taskgroup_semaphore),
        ("asyncio.TaskGroup + 16-worker pool", asyncio_worker_pool),
        ("asyncio.gather + Semaphore", asyncio_gather_semaphore),
        ("anyio TaskGroup + CapacityLimiter", anyio_taskgroup_limiter),
    ],
    "trio": [
        ("trio nursery + CapacityLimiter", trio_nursery_limiter),
        ("anyio TaskGroup + CapacityLimiter", anyio_taskgroup_limiter),
    ],
}


def measure_async(backend: str, contender: AsyncContender, n: int, repeat: int) -> float:
    """Best items/s over ``repeat`` runs, each in a fresh event loop."""

    async def timed() -> float:
        start = time.perf_counter()
        await contender(n)
        return time.perf_counter() - start

    best = min(anyio.run(timed, backend=backend) for _ in range(repeat))
    return n / best


# -- sync contenders -------------------------------------------------------------------
def corral_sync_group(n: int) -> None:
    with corral.sync.TaskGroup(limit=LIMIT) as g:
        for _ in range(n):
            g.start_soon(sync_noop)


def thread_pool_map(n: int) -> None:
    with ThreadPoolExecutor(LIMIT) as pool:  # corral: allow[CRL102] reason="peer baseline"
        for _ in pool.map(sync_noop, range(n)):
            pass


def corral_sync_queue(n: int) -> None:
    with corral.sync.TaskQueue("bench", workers=LIMIT, capacity=n) as q:
        handles = [q.submit_nowait(sync_noop) for _ in range(n)]
    for handle in handles:
        handle.result()


def thread_pool_submit(n: int) -> None:
    with ThreadPoolExecutor(LIMIT) as pool:  # corral: allow[CRL102] reason="peer baseline"
        futures = [pool.submit(sync_noop) for _ in range(n)]
    for future in futures:
        future.result()


def measure_sync(contender: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        contender(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--sync-items", type=int, default=20_000)
    parser.add_argument("--queue-items", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"{args.items:,} no-op items, limit {LIMIT}, best of {args.repeat}")
    for backend, peers in PEERS.items():
        ours = measure_async(backend, corral_group, args.items, args.repeat)
        print(f"\n[{backend}] corral.TaskGroup: {ours:>12,.0f} items/s")
        for label, peer in peers:
            # anyio's per-item task + limiter is ~100x slower: one run is plenty
            runs = 1 if "anyio" in label else args.repeat
            theirs = measure_async(backend, peer, args.items, runs)
            print(f"  vs {label:<36} {theirs:>12,.0f} items/s   ratio {ours / theirs:5.2f}x")

    print(f"\n[threads] {args.sync_items:,} no-op items, limit {LIMIT}")
    ours = measure_sync(corral_sync_group, args.sync_items, args.repeat)
    theirs = measure_sync(thread_pool_map, args.sync_items, args.repeat)
    label = "ThreadPoolExecutor.map"
    print(f"  corral.sync.TaskGroup {ours:>12,.0f} items/s")
    print(f"  vs {label:<36} {theirs:>12,.0f} items/s   ratio {ours / theirs:5.2f}x")

    # Background jobs, not fan-out: each job crosses into the queue's event-loop thread
    # and back out to a worker thread, the price of sharing the async TaskQueue's code.
    print(f"\n[threads] {args.queue_items:,} no-op background jobs, {LIMIT} workers")
    ours = measure_sync(corral_sync_queue, args.queue_items, args.repeat)
    theirs = measure_sync(thread_pool_submit, args.queue_items, args.repeat)
    label = "ThreadPoolExecutor.submit"
    print(f"  corral.sync.TaskQueue {ours:>12,.0f} jobs/s")
    print(f"  vs {label:<36} {theirs:>12,.0f} jobs/s    ratio {ours / theirs:5.2f}x")


if __name__ == "__main__":
    main()
