"""Durable submit throughput: corral's group commit against two peers, in one run.

    python benchmarks/durable_throughput.py [--tasks 20000] [--submitters 100] [--rounds 5]

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
import statistics
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


CONTENDERS = (bench_corral, bench_commit_per_task, bench_persist_queue)


async def main(tasks: int, submitters: int, rounds: int) -> None:
    """Interleaved rounds: each round runs every contender once, in a rotated order, in
    fresh files; the figures are medians over the rounds (one run swings ~3x here)."""
    per: list[list[Result]] = [[] for _ in CONTENDERS]
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        for round_ in range(rounds):
            order = [(round_ + k) % len(CONTENDERS) for k in range(len(CONTENDERS))]
            for index in order:
                directory = Path(tmp) / f"r{round_}-{index}"
                directory.mkdir()
                per[index].append(await CONTENDERS[index](directory, tasks, submitters))
    print(
        f"{tasks} durable submits from {submitters} concurrent submitters, fsync on (corral); "
        f"medians of {rounds} interleaved rounds\n"
    )
    print(f"{'contender':<30} {'tasks/s':>10} {'ms/submit':>10} {'p99 ms':>9}")
    for runs in per:
        rate = statistics.median(r.rate for r in runs)
        amortised = statistics.median(r.amortised_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        print(f"{runs[0].name:<30} {rate:>10,.0f} {amortised:>10.4f} {p99:>9.2f}")
    ours, naive, peer = per
    vs_naive = [o.rate / n.rate for o, n in zip(ours, naive, strict=True)]
    vs_peer = [o.rate / p.rate for o, p in zip(ours, peer, strict=True)]
    print()
    print(
        f"corral / commit-per-task: median {statistics.median(vs_naive):.1f}x, "
        f"range {min(vs_naive):.1f}-{max(vs_naive):.1f}x (target >= 10x)"
    )
    print(
        f"corral / persist-queue:   median {statistics.median(vs_peer):.1f}x, "
        f"range {min(vs_peer):.1f}-{max(vs_peer):.1f}x (target >= 1x)"
    )
    amortised = statistics.median(r.amortised_ms for r in ours)
    print(f"corral amortised: {amortised:.4f} ms per submit, median (target <= 0.1 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--submitters", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    options = parser.parse_args()
    anyio.run(main, options.tasks, options.submitters, options.rounds)
