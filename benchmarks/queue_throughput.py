"""TaskQueue throughput and submit latency against peers measured in the same run.

Runs N no-op tasks (default 100,000) through corral.TaskQueue (16 workers, capacity 1024,
metrics on: a real registry is scraped at the end) and through:

- asyncio: a hand-written asyncio.Queue(1024) + 16 workers pool, aiojobs (limit 16,
  pending_limit 1024) and raw asyncio.create_task;
- trio: a hand-written memory-channel(1024) + 16 workers pool with send_nowait /
  receive_nowait fast paths (the best a trio user can hand-write) and raw
  nursery.start_soon.

Each throughput figure is the best of ``--repeat`` interleaved runs, as tasks per second
of elapsed time and per second of the process's CPU time (the steadier figure on a shared
machine, since every contender is single-threaded); the latency pass is
separate (timing every submit would slow the throughput pass) and reports p50/p99 of
one submit call. Usage: ``python benchmarks/queue_throughput.py [--n 100000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import aiojobs
import anyio
import corral
import trio
from prometheus_client import CollectorRegistry, generate_latest

WORKERS = 16
CAPACITY = 1024


async def noop() -> None:
    pass


# -- TaskQueue (either backend) ------------------------------------------------------------
async def taskqueue_run(n: int, timings: list[int] | None) -> None:
    registry = CollectorRegistry()
    async with corral.TaskQueue(
        "bench", workers=WORKERS, capacity=CAPACITY, registry=registry
    ) as q:
        submit = q.submit
        if timings is None:
            for _ in range(n):
                await submit(noop)
        else:
            clock = time.perf_counter_ns
            for _ in range(n):
                t0 = clock()
                await submit(noop)
                timings.append(clock() - t0)
    generate_latest(registry)  # metrics on: the scrape must work and see the work
    done = registry.get_sample_value(
        "corral_tasks_completed_total", {"queue": "bench", "task": "noop", "outcome": "success"}
    )
    assert done == n, done


# -- asyncio peers -------------------------------------------------------------------------
async def asyncio_queue_run(n: int, timings: list[int] | None) -> None:
    """The worker pool of the asyncio documentation: get, run, task_done; join, cancel."""
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue(CAPACITY)

    async def worker() -> None:
        while True:
            fn = await queue.get()
            try:
                await fn()
            except Exception:
                pass
            finally:
                queue.task_done()

    workers = [
        asyncio.create_task(worker())  # corral: allow[CRL201] reason="peer baseline"
        for _ in range(WORKERS)
    ]
    put = queue.put
    if timings is None:
        for _ in range(n):
            await put(noop)
    else:
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            await put(noop)
            timings.append(clock() - t0)
    await queue.join()
    for task in workers:
        task.cancel()
    await asyncio.wait(workers)


async def aiojobs_run(n: int, timings: list[int] | None) -> None:
    scheduler = aiojobs.Scheduler(limit=WORKERS, pending_limit=CAPACITY, close_timeout=None)
    spawn = scheduler.spawn
    if timings is None:
        for _ in range(n):
            await spawn(noop())
    else:
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            await spawn(noop())
            timings.append(clock() - t0)
    await scheduler.wait_and_close()


async def create_task_run(n: int, timings: list[int] | None) -> None:
    tasks = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock() if timings is not None else 0
        tasks.append(asyncio.create_task(noop()))  # corral: allow[CRL201] reason="peer baseline"
        if timings is not None:
            timings.append(clock() - t0)
    await asyncio.wait(tasks)


# -- trio peers ----------------------------------------------------------------------------
async def trio_channel_run(n: int, timings: list[int] | None) -> None:
    send, receive = trio.open_memory_channel[Callable[[], Awaitable[None]]](CAPACITY)

    async def worker() -> None:
        while True:
            try:
                fn = receive.receive_nowait()
            except trio.WouldBlock:
                try:
                    fn = await receive.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            with contextlib.suppress(Exception):
                await fn()

    async with trio.open_nursery() as nursery:  # corral: allow[CRL204] reason="peer baseline"
        for _ in range(WORKERS):
            nursery.start_soon(worker)
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock() if timings is not None else 0
            try:
                send.send_nowait(noop)
            except trio.WouldBlock:
                await send.send(noop)
            if timings is not None:
                timings.append(clock() - t0)
        await send.aclose()


async def trio_start_soon_run(n: int, timings: list[int] | None) -> None:
    async with trio.open_nursery() as nursery:  # corral: allow[CRL204] reason="peer baseline"
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock() if timings is not None else 0
            nursery.start_soon(noop)
            if timings is not None:
                timings.append(clock() - t0)


Runner = Callable[[int, "list[int] | None"], Awaitable[None]]


class Result(NamedTuple):
    label: str
    wall: float  # best tasks per second of elapsed time
    cpu: float  # best tasks per second of this process's CPU time (robust on a busy machine)
    p50: float  # submit latency, microseconds
    p99: float


def rates(backend: str, runner: Runner, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    anyio.run(runner, n, None, backend=backend)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def latency(backend: str, runner: Runner, n: int) -> tuple[float, float]:
    """p50 and p99 of one submit call, in microseconds (a separate, timed pass)."""
    timings: list[int] = []
    anyio.run(runner, n, timings, backend=backend)
    timings.sort()
    return statistics.median(timings) / 1000, timings[int(len(timings) * 0.99)] / 1000


def measure(backend: str, plan: list[tuple[str, Runner]], n: int, repeat: int) -> list[Result]:
    """Best rates per contender; rounds interleave the contenders so that load from
    other processes on the machine hits them alike."""
    for _, runner in plan:  # warm up: imports, caches and allocator pools, untimed
        anyio.run(runner, max(n // 10, 1000), None, backend=backend)
    wall = dict.fromkeys((label for label, _ in plan), 0.0)
    cpu = dict(wall)
    for _ in range(repeat):
        for label, runner in plan:
            w, c = rates(backend, runner, n)
            wall[label], cpu[label] = max(wall[label], w), max(cpu[label], c)
    return [
        Result(label, wall[label], cpu[label], *latency(backend, runner, n))
        for label, runner in plan
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="tasks per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (best kept)")
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()

    plans = {
        "asyncio": [
            ("corral.TaskQueue", taskqueue_run),
            ("asyncio.Queue + 16 workers", asyncio_queue_run),
            ("aiojobs (limit 16)", aiojobs_run),
            ("raw create_task", create_task_run),
        ],
        "trio": [
            ("corral.TaskQueue", taskqueue_run),
            ("memory channel + 16 workers", trio_channel_run),
            ("raw nursery.start_soon", trio_start_soon_run),
        ],
    }
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    print(f"{args.n:,} no-op tasks, {WORKERS} workers, capacity {CAPACITY}, best of {args.repeat}")
    for backend in backends:
        print(f"\n[{backend}]")
        print(
            f"{'contender':<30}{'tasks/s':>11}{'x':>6}{'tasks/cpu-s':>13}{'x':>6}"
            f"{'p50 us':>8}{'p99 us':>8}"
        )
        results = measure(backend, plans[backend], args.n, args.repeat)
        ours = results[0]
        for r in results:
            print(
                f"{r.label:<30}{r.wall:>11,.0f}{ours.wall / r.wall:>6.2f}{r.cpu:>13,.0f}"
                f"{ours.cpu / r.cpu:>6.2f}{r.p50:>8.2f}{r.p99:>8.2f}"
            )
        peers = {r.label: r for r in results[1:]}
        if backend == "asyncio":
            pool, jobs = peers["asyncio.Queue + 16 workers"], peers["aiojobs (limit 16)"]
            print(
                f"TaskQueue / asyncio.Queue pool = {ours.wall / pool.wall:.2f} wall, "
                f"{ours.cpu / pool.cpu:.2f} cpu (target >= 0.5); TaskQueue / aiojobs = "
                f"{ours.wall / jobs.wall:.2f} wall, {ours.cpu / jobs.cpu:.2f} cpu (target >= 3)"
            )
        else:
            pool = peers["memory channel + 16 workers"]
            print(
                f"TaskQueue / memory-channel pool = {ours.wall / pool.wall:.2f} wall, "
                f"{ours.cpu / pool.cpu:.2f} cpu"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
