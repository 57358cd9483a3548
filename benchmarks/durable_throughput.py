"""Durable submit throughput: corral's group commit against two peers, in one run.

    python benchmarks/durable_throughput.py [--tasks 20000] [--submitters 100] [--rounds 5]
    python benchmarks/durable_throughput.py --order [--tasks 5000] [--rounds 5]

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

``--order`` measures what ordering keys and priorities cost instead, end to end (submit
every task, then leave the block, which waits until all ran): the same workload keyless
against with ``key=`` (100 keys) and ``priority=`` (0..9) in use, interleaved rounds,
medians, with the load average. It also times the store's claim query alone, the
version before keys and priorities (its schema and index) against today's, on the same
backlog.
"""

from __future__ import annotations

import argparse
import json
import os
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


async def end_to_end(directory: Path, tasks: int, submitters: int, *, ordered: bool) -> Result:
    """Submit ``tasks`` and wait until all ran; with ``ordered``, keys and priorities on."""
    store = corral.SQLiteStore(directory / "corral.db")
    began = time.perf_counter()
    async with corral.TaskQueue(
        "bench", workers=8, capacity=tasks, store=store, registry=CollectorRegistry()
    ) as q:

        async def submit(i: int) -> object:
            if ordered:
                return await q.submit(
                    send_email, i, "welcome", key=f"user-{i % 100}", priority=i % 10
                )
            return await q.submit(send_email, i, "welcome")

        name = "keys + priorities" if ordered else "keyless"
        result = await drive(name, tasks, submitters, submit)
    result.seconds = time.perf_counter() - began  # until the last task finished
    return result


#: The claim query and index before keys and priorities (schema v2), for --order.
_OLD_CLAIM = (
    "UPDATE tasks SET state = 'running', attempts = attempts + 1, updated_at = ?"
    " WHERE seq IN (SELECT seq FROM tasks WHERE queue = ? AND state = 'pending'"
    " AND not_before <= ? ORDER BY not_before, seq LIMIT ?) RETURNING id, seq"
)


def claim_queries(backlog: int, batch: int = 8) -> tuple[float, float]:
    """Seconds to claim (and delete) a backlog of ``backlog`` due rows ``batch`` at a time:
    (v2 query on the v2 index, today's query on today's schema), same process."""
    from corral.store import sqlite as current
    from corral.store._schema import MIGRATIONS

    times: list[float] = []
    for old in (True, False):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        for version in sorted(MIGRATIONS):
            if old and version > 2:
                break
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO tasks (id, queue, name, payload, max_attempts, not_before,"
            " created_at, updated_at, state) VALUES (?, 'q', 'n', '{}', 3, ?, 0, 0, 'pending')",
            ((f"t{i}", float(i % 50)) for i in range(backlog)),
        )
        conn.execute("COMMIT")
        began = time.perf_counter()
        while True:
            if old:
                rows = conn.execute(_OLD_CLAIM, (1e9, "q", 1e9, batch)).fetchall()
            else:
                rows = conn.execute(current._CLAIM, ("q", 1e9, batch, 1e9)).fetchall()
            if not rows:
                break
            conn.executemany("DELETE FROM tasks WHERE id = ?", ((r[0],) for r in rows))
        times.append(time.perf_counter() - began)
        conn.close()
    return times[0], times[1]


async def main_order(tasks: int, submitters: int, rounds: int) -> None:
    """Interleaved rounds of the keyless and the ordered workload (rotated order)."""
    load_before = os.getloadavg()
    runs: dict[bool, list[Result]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        for round_ in range(rounds):
            for ordered in (round_ % 2 == 1, round_ % 2 == 0):
                directory = Path(tmp) / f"r{round_}-{int(ordered)}"
                directory.mkdir()
                runs[ordered].append(
                    await end_to_end(directory, tasks, submitters, ordered=ordered)
                )
    claims = [claim_queries(tasks) for _ in range(rounds)]
    load_after = os.getloadavg()
    print(
        f"{tasks} durable tasks end to end (submit from {submitters} submitters until the "
        f"last ran), medians of {rounds} interleaved rounds"
    )
    print(f"{'workload':<22} {'tasks/s':>10} {'p99 submit ms':>14}")
    for ordered in (False, True):
        rate = statistics.median(r.rate for r in runs[ordered])
        p99 = statistics.median(r.p99_ms for r in runs[ordered])
        print(f"{runs[ordered][0].name:<22} {rate:>10,.0f} {p99:>14.2f}")
    ratios = [o.rate / k.rate for o, k in zip(runs[True], runs[False], strict=True)]
    print(
        f"keys+priorities / keyless: median {statistics.median(ratios):.2f}x, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}x"
    )
    old = statistics.median(c[0] for c in claims)
    new = statistics.median(c[1] for c in claims)
    print(
        f"claim query alone, {tasks} due rows claimed 8 at a time: v2 {old * 1000:.1f} ms, "
        f"today {new * 1000:.1f} ms (today / v2: {new / old:.2f}x time)"
    )
    print(
        "load average (1, 5, 15 min): before "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + " ".join(f"{x:.2f}" for x in load_after)
    )


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
    parser.add_argument(
        "--order", action="store_true", help="keys and priorities against keyless (see above)"
    )
    options = parser.parse_args()
    if options.order:
        anyio.run(main_order, options.tasks, options.submitters, options.rounds)
    else:
        anyio.run(main, options.tasks, options.submitters, options.rounds)
