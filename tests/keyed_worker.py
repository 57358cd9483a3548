"""A worker process for the per-key chaos tests: runs keyed durable tasks until killed.

Usage:
  keyed_worker.py redis URL STREAM CONSUMER LOG BACKEND   serve the stream until killed
  keyed_worker.py sqlite DB CONSUMER LOG BACKEND          run what is stored, then exit

Each execution appends ``start <key> <n> <consumer> <time>`` and ``end ...`` to LOG with
O_APPEND and an fsync, so the parent sees every interval, in order, even across kill -9.
"""

from __future__ import annotations

import os
import random
import sys
import time

import anyio
import corral
from prometheus_client import CollectorRegistry

LOG = ""
CONSUMER = ""


def note(kind: str, key: str, n: int) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} {key} {n} {CONSUMER} {time.time():.6f}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@corral.task(name="keyed.step")
async def step(key: str, n: int, hold_in: str = "") -> int:
    note("start", key, n)
    # The task the parent kills mid-flight lingers only in the chosen process.
    await anyio.sleep(60 if hold_in == CONSUMER else random.uniform(0.002, 0.02))
    note("end", key, n)
    return n


async def serve_redis(url: str, stream: str) -> None:
    store = corral.RedisStore(url, stream=stream, consumer=CONSUMER, visibility_timeout=1.0)
    async with corral.TaskQueue(
        "keyed", workers=4, capacity=100_000, store=store, registry=CollectorRegistry()
    ):
        note("ready", "-", -1)
        await anyio.sleep_forever()


async def run_sqlite(db: str) -> None:
    async with corral.TaskQueue(
        "keyed",
        workers=4,
        capacity=100_000,
        store=corral.SQLiteStore(db),
        registry=CollectorRegistry(),
    ):
        note("ready", "-", -1)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "redis":
        url, stream, CONSUMER, LOG, backend = sys.argv[2:7]
        anyio.run(serve_redis, url, stream, backend=backend)
    else:
        db, CONSUMER, LOG, backend = sys.argv[2:6]
        anyio.run(run_sqlite, db, backend=backend)
