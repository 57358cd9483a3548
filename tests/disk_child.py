"""A durable queue on a file system that fills up (run by the parent inside a private
mount namespace on a tiny tmpfs): submit until the disk is full, then leave the block.

Usage: disk_child.py full DB BACKEND   prints "FULL n" (tasks acknowledged), "LEAVING",
                                       then "LEFT seconds" once ``async with`` returned
       disk_child.py open DB BACKEND   open a durable queue on DB; print "OPENED" or
                                       "<exception type>: <message>"
"""

from __future__ import annotations

import sys
import time

import anyio
import corral
from corral.store import StoreError
from prometheus_client import CollectorRegistry

gate: anyio.Event | None = None


@corral.task(name="disk.wait")
async def wait() -> None:
    assert gate is not None
    await gate.wait()


@corral.task(name="disk.echo")
async def echo(value: str) -> None:
    return None


async def fill(db: str) -> None:
    global gate
    gate = anyio.Event()
    queue = corral.TaskQueue(
        "disk",
        workers=1,
        capacity=100_000,
        store=corral.SQLiteStore(db),
        registry=CollectorRegistry(),
    )
    async with queue as q:
        await q.submit(wait)  # the worker is busy: the rows stay stored
        acknowledged = 0
        try:
            while True:
                await q.submit(echo, "x" * 4000)
                acknowledged += 1
        except StoreError as exc:
            print(f"FULL {acknowledged} {exc}", flush=True)
        q.submit_nowait(echo, "never stored")  # accepted, then its write fails
        gate.set()
        print("LEAVING", flush=True)
        started = time.monotonic()
    print(f"LEFT {time.monotonic() - started:.3f}", flush=True)


async def open_queue(db: str) -> None:
    try:
        async with corral.TaskQueue(
            "disk",
            workers=1,
            capacity=10,
            store=corral.SQLiteStore(db),
            registry=CollectorRegistry(),
        ):
            print("OPENED", flush=True)
    except StoreError as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    mode, db, backend = sys.argv[1:4]
    anyio.run(fill if mode == "full" else open_queue, db, backend=backend)
