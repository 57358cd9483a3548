"""Durable submit throughput: corral's group commit against two peers, in one run.

    python benchmarks/durable_throughput.py [--tasks 20000] [--submitters 100]

Every contender persists the same JSON payload from ``--submitters`` concurrent
submitters into a fresh SQLite file, and a submit counts only once the row is committed:

- corral: ``await q.submit(...)`` on ``TaskQueue(store=SQLiteStore(...))`` (WAL,
  synchronous=FULL: fsynced before it returns); the queue's workers run the tasks
  at the same time, so claims and completions share the disk with the submits.
- commit-per-task: the straightforward async approach, one INSERT + COMMIT per task on a
  WAL + synchronous=FULL connection behind ``anyio.to_thread`` and a CapacityLimiter(1).
- persist-queue: ``SQLiteAckQueue(multithreading=True)``, one ``put`` per task from the
  submitters through ``anyio.to_thread`` (its default settings, JSON serializer).

Prints tasks/s, amortised ms per submit and p99 submit latency, and the ratios against
the targets (>= 10x commit-per-task, >= 1x persist-queue).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import corral
import persistqueue
import persistqueue.serializers.json
from prometheus_client import CollectorRegistry


@corral.task(name="bench.send_email")
async def send_email(user_id: int, template: str) -> None:
    return None


@dataclass
class Result:
    name: str
    tasks: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def amortised_ms(self) -> float:
        return self.seconds / self.tasks * 1000

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def drive(
    name: str, tasks: int, submitters: int, submit: Callable[[int], Awaitable[object]]
) -> Result:
    """Run ``submit(i)`` for i in range(tasks) from ``submitters`` concurrent submitters."""
    latencies: list[float] = []
    numbers = iter(range(tasks))
    perf = time.perf_counter

    async def submitter() -> None:
        for i in numbers:
            started = perf()
            await submit(i)
            latencies.append(perf() - started)

    began = perf()
    async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="benchmark driver"
        for _ in range(submitters):
            tg.start_soon(submitter)
    return Result(name, tasks, perf() - began, latencies)


async def bench_corral(directory: Path, tasks: int, submitters: int) -> Result:
    store = corral.SQLiteStore(directory / "corral.db")
    async with corral.TaskQueue(
        "bench", workers=8, capacity=tasks, store=store, registry=CollectorRegistry()
    ) as q:

        async def submit(i: int) -> object:
            return await q.submit(send_email, i, "welcome")

        return await drive("corral group commit", tasks, submitters, submit)


async def bench_commit_per_task(directory: Path, tasks: int, submitters: int) -> Result:
    conn = sqlite3.connect(directory / "naive.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT, payload TEXT)")
    limiter = anyio.CapacityLimiter(1)

    def insert(i: int) -> None:
        payload = json.dumps({"args": [i, "welcome"], "kwargs": {}})
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO tasks (name, payload) VALUES (?, ?)", ("send_email", payload))
        conn.execute("COMMIT")

    async def submit(i: int) -> None:
        await anyio.to_thread.run_sync(insert, i, limiter=limiter)

    try:
        return await drive("commit per task", tasks, submitters, submit)
    finally:
        conn.close()


async def bench_persist_queue(directory: Path, tasks: int, submitters: int) -> Result:
    queue = persistqueue.SQLiteAckQueue(
        str(directory / "pq"), multithreading=True, serializer=persistqueue.serializers.json
    )
    limiter = anyio.CapacityLimiter(submitters)

    async def submit(i: int) -> None:
        item = {"task": "send_email", "args": [i, "welcome"]}
        await anyio.to_thread.run_sync(queue.put, item, limiter=limiter)

    return await drive("persist-queue SQLiteAckQueue", tasks, submitters, submit)


async def main(tasks: int, submitters: int) -> None:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        directory = Path(tmp)
        results = [
            await bench_corral(directory, tasks, submitters),
            await bench_commit_per_task(directory, tasks, submitters),
            await bench_persist_queue(directory, tasks, submitters),
        ]
    print(f"{tasks} durable submits from {submitters} concurrent submitters, fsync on (corral)\n")
    print(f"{'contender':<30} {'tasks/s':>10} {'ms/submit':>10} {'p99 ms':>9}")
    for r in results:
        print(f"{r.name:<30} {r.rate:>10,.0f} {r.amortised_ms:>10.4f} {r.p99_ms:>9.2f}")
    ours, naive, peer = results
    print()
    print(f"corral / commit-per-task: {ours.rate / naive.rate:.1f}x (target >= 10x)")
    print(f"corral / persist-queue:   {ours.rate / peer.rate:.1f}x (target >= 1x)")
    print(f"corral amortised: {ours.amortised_ms:.4f} ms per submit (target <= 0.1 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--submitters", type=int, default=100)
    options = parser.parse_args()
    anyio.run(main, options.tasks, options.submitters)
