"""What corral.otel.Tracing costs a TaskQueue, against the same queue without it, same run.

Three contenders push N no-op tasks (default 50,000) through a TaskQueue (16 workers,
capacity 1024), interleaved ``--repeat`` times, reporting the median tasks/s of CPU time and
its ratio to "off":

- off: no observer, no middleware;
- no provider: ``**tracing_options()`` with the OpenTelemetry API present and no tracer
  provider configured (a service that installs corral[otel] but does not set up tracing);
- sdk: ``**tracing_options(provider)`` with the SDK and no span processor (real spans).

Then the same three on a durable queue (``store=SQLiteStore``, a fresh file per run, 50
concurrent submitters, ``--durable-n`` tasks): there "sdk" also stores the W3C context with
every task and reads it back for the attempt's link.

Usage: ``python benchmarks/otel_overhead.py [--n 50000] [--durable-n 4000] [--repeat 5]
[--backend asyncio]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio
import corral
from corral.otel import tracing_options
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry


async def noop() -> None:
    pass


@corral.task(name="bench.otel.durable_noop")
async def durable_noop() -> None:
    pass


Options = dict[str, list[Any]]


async def run(n: int, make: Callable[[], Options]) -> float:
    """CPU seconds to submit and finish ``n`` tasks."""
    queue = corral.TaskQueue(
        "bench", workers=16, capacity=1024, registry=CollectorRegistry(), **make()
    )
    async with queue as q:
        start = time.process_time()
        for _ in range(n):
            await q.submit(noop)
    return time.process_time() - start  # leaving the block waited for every task


async def run_durable(n: int, make: Callable[[], Options]) -> float:
    """CPU seconds to submit (50 submitters) and finish ``n`` durable tasks."""
    with tempfile.TemporaryDirectory() as tmp:
        queue = corral.TaskQueue(
            "bench",
            workers=16,
            capacity=n,
            registry=CollectorRegistry(),
            store=corral.SQLiteStore(f"{tmp}/tasks.db"),
            **make(),
        )
        async with queue as q:
            start = time.process_time()

            async def submitter(count: int) -> None:
                for _ in range(count):
                    await q.submit(durable_noop)

            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(submitter, n // 50)
        return time.process_time() - start


def report(title: str, n: int, seconds: dict[str, list[float]]) -> None:
    off = n / statistics.median(seconds["off"])
    print(title)
    for name, values in seconds.items():
        rate = n / statistics.median(values)
        print(f"  {name:<12} {rate:>10,.0f} tasks/s (CPU)  {rate / off:.2f}x off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--durable-n", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    args = parser.parse_args()
    sdk = TracerProvider()
    contenders: dict[str, Callable[[], Options]] = {
        "off": dict,
        "no provider": tracing_options,
        "sdk": lambda: tracing_options(sdk),
    }
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    durable: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, make in contenders.items():
            seconds[name].append(anyio.run(run, args.n, make, backend=args.backend))
            durable[name].append(anyio.run(run_durable, args.durable_n, make, backend=args.backend))
    print(f"{args.repeat} repeats, {args.backend}, loadavg {os.getloadavg()[0]:.2f}")
    report(f"in memory, {args.n} tasks", args.n, seconds)
    report(f"durable (SQLite), {args.durable_n} tasks", args.durable_n, durable)


if __name__ == "__main__":
    main()
