"""A process for crash tests: submits and runs durable tasks until the parent kills it.

Usage:
  durable_child.py submit DB LOG FIRST COUNT BACKEND   submit FIRST..FIRST+COUNT-1, print "ACK n"
                                                       after each submit returned, then drain
  durable_child.py drain DB LOG BACKEND                replay whatever is stored, then exit
  durable_child.py poison DB BACKEND [submit]          a task that SIGKILLs its own process
"""

from __future__ import annotations

import os
import random
import signal
import sys

import anyio
import corral
from prometheus_client import CollectorRegistry

LOG = ""


@corral.task(name="crash.record")
async def record(n: int) -> int:
    # Append-only log of executions: survives SIGKILL (the OS holds written data).
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        await anyio.sleep(random.random() * 0.004)  # be mid-task when the kill lands
        os.write(fd, f"{n}\n".encode())
    finally:
        os.close(fd)
    return n


@corral.task(name="crash.poison", retry=corral.Retry(3))
async def poison() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def open_queue(db: str) -> corral.TaskQueue:
    return corral.TaskQueue(
        "crash",
        workers=4,
        capacity=100_000,
        store=corral.SQLiteStore(db),
        registry=CollectorRegistry(),
    )


async def submit(db: str, first: int, count: int) -> None:
    async with open_queue(db) as q:
        numbers = iter(range(first, first + count))

        async def submitter() -> None:
            for n in numbers:
                await q.submit(record, n, idempotency_key=str(n))
                print(f"ACK {n}", flush=True)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(submitter)


async def drain(db: str) -> None:
    async with open_queue(db):
        pass


async def run_poison(db: str, submit_one: bool) -> None:
    async with open_queue(db) as q:
        if submit_one:
            await q.submit(poison)


def main(argv: list[str]) -> None:
    global LOG
    mode = argv[0]
    if mode == "submit":
        db, LOG, first, count, backend = argv[1:6]
        anyio.run(submit, db, int(first), int(count), backend=backend)
    elif mode == "drain":
        db, LOG, backend = argv[1:4]
        anyio.run(drain, db, backend=backend)
    elif mode == "poison":
        db, backend = argv[1:3]
        anyio.run(run_poison, db, argv[3:] == ["submit"], backend=backend)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
