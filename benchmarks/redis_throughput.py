"""Redis store throughput: corral vs a plain redis-py Streams loop vs rq, same redis-server.

    python benchmarks/redis_throughput.py [--tasks 5000] [--url redis://...]

Starts its own ``redis-server`` (``appendonly yes``, ``appendfsync always``: every
acknowledged write is fsynced) on a free loopback port unless ``--url`` is given, and
measures in the same run:

- submits/s: one submitter awaiting each acknowledgement in turn (a plain ``XADD`` loop,
  ``RedisStore.enqueue``, ``rq.Queue.enqueue``), and corral with 64 concurrent
  submitters (the web-server case, where group commit shares round trips and fsyncs);
- end-to-end tasks/s with 1 and 3 worker processes: the stream is filled first, then
  the workers are released together and the clock runs until every task is acknowledged
  (a plain ``XREADGROUP`` + ``XACK``/``XDEL`` loop, ``TaskQueue(store=RedisStore)``
  with 16 workers per process, rq's ``SimpleWorker`` in burst mode).

rq is skipped with a printed reason when it is not installed (``pip install rq``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import corral
import redis
from corral.store import NewTask
from prometheus_client import CollectorRegistry

GROUP = "bench"


async def noop_async(n: int) -> None:
    """The corral task (registered in corral worker processes only)."""
    return None


def noop(n: int) -> None:
    """The rq job; rq workers import it as ``redis_throughput.noop``."""
    return None


# -- redis-server --------------------------------------------------------------------
def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def wait_for(done: Callable[[], bool], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.002)


# -- worker processes ----------------------------------------------------------------
def worker_main(kind: str, url: str, key: str, consumer: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    client.rpush(f"{key}:ready", consumer)
    client.blpop([f"{key}:go"])
    if kind == "plain":
        plain_consumer(client, key, consumer)
    elif kind == "corral":
        anyio.run(corral_worker, url, key, consumer)
    else:
        from rq import Queue, SimpleWorker

        conn = redis.Redis.from_url(url)
        SimpleWorker([Queue(key, connection=conn)], connection=conn).work(
            burst=True, logging_level="WARNING"
        )


def plain_consumer(client: redis.Redis, stream: str, consumer: str) -> None:
    """The physical floor: read a batch, acknowledge and delete each entry once done."""
    while True:
        reply: Any = client.xreadgroup(GROUP, consumer, {stream: ">"}, count=100, block=200)
        if not reply:
            if client.xlen(stream) == 0:
                return
            continue
        for entry_id, _fields in reply[0][1]:
            pipe = client.pipeline(transaction=False)
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()


async def corral_worker(url: str, stream: str, consumer: str) -> None:
    corral.task(name="bench.noop")(noop_async)
    store = corral.RedisStore(url, stream=stream, consumer=consumer)
    client = redis.Redis.from_url(url)
    async with corral.TaskQueue(
        "bench", workers=16, capacity=1_000_000, store=store, registry=CollectorRegistry()
    ):
        while client.zcard(f"{stream}:live"):
            await anyio.sleep(0.01)


def run_workers(kind: str, url: str, key: str, count: int, done: Callable[[], bool]) -> float:
    """Start ``count`` worker processes, release them together, time until ``done()``."""
    client = redis.Redis.from_url(url)
    procs = [
        subprocess.Popen([sys.executable, __file__, "worker", kind, url, key, f"w{i}"])
        for i in range(count)
    ]
    try:
        wait_for(lambda: client.llen(f"{key}:ready") >= count, timeout=60)
        started = time.perf_counter()
        client.rpush(f"{key}:go", *(["go"] * count))
        wait_for(done)
        return time.perf_counter() - started
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- submitting ----------------------------------------------------------------------
def new_task(n: int) -> NewTask:
    now = time.time()
    return NewTask(
        id=uuid.uuid4().hex,
        queue="bench",
        name="bench.noop",
        payload=json.dumps({"args": [n], "kwargs": {}}),
        max_attempts=3,
        not_before=now,
        created_at=now,
    )


def plain_submit(url: str, stream: str, n: int) -> float:
    client = redis.Redis.from_url(url)
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    started = time.perf_counter()
    for i in range(n):
        client.xadd(stream, {"task": "noop", "args": f"[{i}]"})
    return time.perf_counter() - started


def corral_submit(url: str, stream: str, n: int, concurrency: int) -> float:
    async def go() -> float:
        async with corral.RedisStore(url, stream=stream, consumer="submitter") as store:
            started = time.perf_counter()

            async def submitter(first: int) -> None:
                for i in range(first, n, concurrency):
                    await store.enqueue([new_task(i)])

            async with (
                anyio.create_task_group() as tg
            ):  # corral: allow[CRL204] reason="benchmark submitters"
                for first in range(concurrency):
                    tg.start_soon(submitter, first)
            return time.perf_counter() - started

    return anyio.run(go)


def rq_submit(url: str, key: str, n: int) -> float:
    from rq import Queue

    queue = Queue(key, connection=redis.Redis.from_url(url))
    started = time.perf_counter()
    for i in range(n):
        queue.enqueue("redis_throughput.noop", i, result_ttl=600)
    return time.perf_counter() - started


# -- the run ---------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N interleaved runs")
    parser.add_argument(
        "--fsync",
        choices=("always", "everysec", "both"),
        default="both",
        help="Redis appendfsync policy to measure under (both: always, then everysec)",
    )
    parser.add_argument("--url", help="use this Redis instead of starting one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.url
        if url is None:
            server, url = start_redis(tmp)
        try:
            client = redis.Redis.from_url(url)
            for policy in ("always", "everysec") if args.fsync == "both" else (args.fsync,):
                client.config_set("appendfsync", policy)
                report(url, args.tasks, args.repeat, policy)
        finally:
            if server is not None:
                server.terminate()
                server.wait()


def best(repeat: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Rates (tasks/s) of each run: the best of ``repeat`` rounds, interleaved so that a
    noisy disk (fsync times vary a lot on shared machines) hits every contender alike."""
    rates = dict.fromkeys(runs, 0.0)
    for _ in range(repeat):
        for label, run in runs.items():
            rates[label] = max(rates[label], run())
    return rates


def report(url: str, n: int, repeat: int, policy: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        import rq  # noqa: F401

        rq_reason = None
    except ImportError:
        rq_reason = "rq is not installed (pip install rq)"

    def key(label: str) -> str:
        return f"bench:{label}:{uuid.uuid4().hex[:6]}"

    print(f"\n== {n} tasks, appendfsync {policy}, {os.cpu_count()} cores, best of {repeat}")
    runs: dict[str, Callable[[], float]] = {
        "plain XADD loop": lambda: n / plain_submit(url, key("plain"), n),
        "corral, 1 submitter": lambda: n / corral_submit(url, key("corral"), n, 1),
        "corral, 64 submitters": lambda: n / corral_submit(url, key("corral"), n, 64),
    }
    if rq_reason is None:
        runs["rq enqueue loop"] = lambda: n / rq_submit(url, key("rq"), n)
    submits = best(repeat, runs)
    floor = submits["plain XADD loop"]
    print("submits/s (acknowledged by Redis)")
    for label, rate in submits.items():
        print(f"  {label:<24} {rate:>9,.0f}/s   {rate / floor:5.2f}x plain")
    if rq_reason is not None:
        print(f"  rq: skipped: {rq_reason}")

    print("end-to-end tasks/s (a filled stream drained by worker processes)")
    for workers in (1, 3):

        def plain(workers: int = workers) -> float:
            k = key("plain")
            plain_submit(url, k, n)
            return n / run_workers("plain", url, k, workers, lambda: client.xlen(k) == 0)

        def ours(workers: int = workers) -> float:
            k = key("corral")
            corral_submit(url, k, n, 64)
            done = lambda: client.zcard(f"{k}:live") == 0  # noqa: E731
            return n / run_workers("corral", url, k, workers, done)

        def peer(workers: int = workers) -> float:
            from rq import Queue

            k = key("rq")
            rq_submit(url, k, n)
            queue = Queue(k, connection=client)
            done = lambda: queue.finished_job_registry.count >= n  # noqa: E731
            return n / run_workers("rq", url, k, workers, done)

        contenders: dict[str, Callable[[], float]] = {"plain": plain, "corral": ours}
        if rq_reason is None:
            contenders["rq SimpleWorker"] = peer
        rates = best(repeat, contenders)
        line = ", ".join(f"{label} {rate:,.0f}/s" for label, rate in rates.items())
        print(f"  {workers} process(es): {line}")
        versus = ""
        if "rq SimpleWorker" in rates:
            versus = f", {rates['corral'] / rates['rq SimpleWorker']:.2f}x rq"
        print(f"    corral = {rates['corral'] / rates['plain']:.2f}x plain{versus}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(*sys.argv[2:6])
    else:
        main()
