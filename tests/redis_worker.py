"""A worker process of a fleet sharing one Redis stream (for the SIGKILL tests).

Usage: redis_worker.py URL STREAM CONSUMER LOG BACKEND

Runs a durable TaskQueue on ``RedisStore(URL, stream=STREAM, consumer=CONSUMER)`` until
killed. Every execution appends ``start <n> <consumer>`` and ``done <n> <consumer>`` to
LOG (O_APPEND writes survive SIGKILL), so the parent sees exactly who ran what.
"""

from __future__ import annotations

import os
import sys

import anyio
import corral
from prometheus_client import CollectorRegistry

LOG = ""
CONSUMER = ""


def note(line: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@corral.task(name="fleet.record")
async def record(n: int, hold_in: str = "") -> int:
    note(f"start {n} {CONSUMER}")
    # The task the parent kills mid-flight: it lingers only in the chosen process.
    await anyio.sleep(60 if hold_in == CONSUMER else 0.002)
    note(f"done {n} {CONSUMER}")
    return n


async def main(url: str, stream: str) -> None:
    store = corral.RedisStore(url, stream=stream, consumer=CONSUMER, visibility_timeout=1.0)
    async with corral.TaskQueue(
        "fleet", workers=4, capacity=100_000, store=store, registry=CollectorRegistry()
    ):
        note(f"ready - {CONSUMER}")
        await anyio.sleep_forever()


if __name__ == "__main__":
    url, stream, CONSUMER, LOG, backend = sys.argv[1:6]
    anyio.run(main, url, stream, backend=backend)
