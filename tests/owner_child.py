"""A process for the queue-ownership and lost-WAL tests; the parent kills it with SIGKILL.

Usage:
  owner_child.py serve DB LOG COUNT BACKEND    submit COUNT tasks, run what is stored;
                                               tasks log "<n> <pid>" when they start and
                                               block forever when $OWNER_CHILD_HOLD is set;
                                               prints READY once COUNT tasks started,
                                               exits 3 with the StoreError on stderr
  owner_child.py acked DB COUNT BACKEND        hold a read snapshot (so nothing is
                                               checkpointed into the main file), submit
                                               COUNT tasks, print "ACK id" for each
                                               acknowledged one, then READY, and wait
"""

from __future__ import annotations

import os
import sqlite3
import sys

import anyio
import corral
from corral.store import StoreError
from prometheus_client import CollectorRegistry

LOG = ""
started = 0
all_started: anyio.Event | None = None
expected = 0


@corral.task(name="owner.work")
async def work(n: int) -> int:
    global started
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{n} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    started += 1
    if all_started is not None and started >= expected:
        all_started.set()
    if os.environ.get("OWNER_CHILD_HOLD"):
        await anyio.sleep_forever()
    return n


@corral.task(name="owner.hold")
async def hold(n: int) -> int:
    await anyio.sleep_forever()
    return n  # pragma: no cover - killed first


def open_queue(db: str, workers: int) -> corral.TaskQueue:
    return corral.TaskQueue(
        "owned",
        workers=workers,
        capacity=10_000,
        store=corral.SQLiteStore(db),
        registry=CollectorRegistry(),
    )


async def serve(db: str, count: int) -> None:
    global all_started, expected
    all_started, expected = anyio.Event(), count
    async with open_queue(db, workers=8) as q:
        for n in range(count):
            await q.submit(work, n)
        if count:
            await all_started.wait()
            print("READY", flush=True)


async def acked(db: str, count: int) -> None:
    async with corral.SQLiteStore(db):
        pass  # the schema is in the main file now
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM tasks").fetchone()  # a snapshot: no checkpoint
    async with open_queue(db, workers=1) as q:
        for n in range(count):
            handle = await q.submit(hold, n)
            print(f"ACK {handle.id}", flush=True)
        print("READY", flush=True)
        await anyio.sleep_forever()


def main(argv: list[str]) -> None:
    global LOG
    try:
        if argv[0] == "serve":
            db, LOG, count, backend = argv[1:5]
            anyio.run(serve, db, int(count), backend=backend)
        elif argv[0] == "acked":
            db, count, backend = argv[1:4]
            anyio.run(acked, db, int(count), backend=backend)
        else:
            raise SystemExit(f"unknown mode {argv[0]!r}")
    except StoreError as exc:
        print(f"StoreError: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None


if __name__ == "__main__":
    main(sys.argv[1:])
