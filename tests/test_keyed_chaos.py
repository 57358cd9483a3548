"""Per-key ordering under kill -9, with real processes.

- Redis: three worker processes on one stream (priorities in use too); one is
  SIGKILLed while it runs a task of key ``a``. Across the fleet no two tasks of one key
  ever run at once, the dead worker's key is released only by its lease expiring (the
  task is reclaimed, never the next one started early), and every task runs.
- SQLite (one owner per database and queue): the owner is SIGKILLed mid-task and
  restarted, twice; the same checks hold across the restarts.

Each task appends ``start``/``end`` lines (O_APPEND + fsync) to one log; an interval the
kill cut short ends at the ``kill`` line the parent writes after the process is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import redis
from conftest_redis import RedisServer
from corral import RedisStore, SQLiteStore
from corral.store import NewTask, Store

WORKER = str(Path(__file__).with_name("keyed_worker.py"))
KEYS = ("a", "b", "c", "d")

Line = tuple[str, str, int, str, float]  # kind, key, n, consumer, time


def task(key: str, n: int, hold_in: str = "", priority: int = 0) -> NewTask:
    return NewTask(
        id=uuid.uuid4().hex,
        queue="keyed",
        name="keyed.step",
        payload=json.dumps({"args": [key, n, hold_in], "kwargs": {}}),
        max_attempts=5,
        not_before=time.time(),
        created_at=time.time(),
        key=key,
        priority=priority,
    )


def enqueue(store: Store, tasks: list[NewTask]) -> None:
    async def go() -> None:
        async with store:
            await store.enqueue(tasks)

    anyio.run(go)


def read(log: Path) -> list[Line]:
    if not log.exists():
        return []
    out: list[Line] = []
    for text in log.read_text().splitlines():
        kind, key, n, who, at = text.split()
        out.append((kind, key, int(n), who, float(at)))
    return out


def note_kill(log: Path, consumer: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"kill - -1 {consumer} {time.time():.6f}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def wait_until(what: str, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def check_intervals(lines: list[Line], expected: dict[str, list[int]]) -> dict[str, list[int]]:
    """No two intervals of one key overlap; every task ended; first starts in order.

    Returns the tasks of each key that ran more than once (cut short by a kill)."""
    running: dict[str, tuple[int, str]] = {}
    first_starts: dict[str, list[int]] = {key: [] for key in expected}
    ended: dict[str, set[int]] = {key: set() for key in expected}
    again: dict[str, list[int]] = {key: [] for key in expected}
    for kind, key, n, who, _at in lines:
        if kind == "kill":
            running = {k: v for k, v in running.items() if v[1] != who}
        elif kind == "start":
            assert key not in running, f"{key}:{n} started while {key}:{running[key]} ran"
            running[key] = (n, who)
            if n in first_starts[key]:
                again[key].append(n)
            else:
                first_starts[key].append(n)
        elif kind == "end":
            assert running.pop(key) == (n, who)
            ended[key].add(n)
    for key, numbers in expected.items():
        assert first_starts[key] == numbers, f"key {key} started out of order"
        assert ended[key] == set(numbers), f"key {key}: not every task finished"
    return again


def test_a_killed_fleet_worker_never_lets_a_key_run_twice_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    stream = f"keyed:{uuid.uuid4().hex[:8]}"
    log = tmp_path / "runs.log"
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(consumer: str, backend: str) -> None:
        with open(tmp_path / f"{consumer}.err", "wb") as err:
            procs[consumer] = subprocess.Popen(
                [
                    sys.executable,
                    WORKER,
                    "redis",
                    redis_server.url,
                    stream,
                    consumer,
                    str(log),
                    backend,
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_until(
            f"{consumer} ready",
            lambda: any(line[0] == "ready" and line[3] == consumer for line in read(log)),
        )

    url = redis_server.url
    try:
        spawn("victim", "asyncio")
        # a:0 lingers in the victim; the rest of key a must wait for it, fleet-wide.
        enqueue(RedisStore(url, stream=stream, consumer="web"), [task("a", 0, hold_in="victim")])
        wait_until(
            "victim mid-task", lambda: any(line[:3] == ("start", "a", 0) for line in read(log))
        )
        spawn("b", "trio")
        spawn("c", "asyncio")
        # priorities in use too: per-key order must beat them, leases work per stream
        tasks = [
            task(key, n, priority=n % 10) for n in range(15) for key in KEYS if (key, n) != ("a", 0)
        ]
        enqueue(RedisStore(url, stream=stream, consumer="web"), tasks)
        expected = {key: list(range(15)) for key in KEYS}
        wait_until(
            "the other keys to make progress",
            lambda: sum(line[0] == "end" for line in read(log)) >= 20,
        )
        assert not any(line[:2] == ("start", "a") and line[2] > 0 for line in read(log))
        os.kill(procs["victim"].pid, signal.SIGKILL)
        procs["victim"].wait(timeout=10)
        killed_at = time.time()
        note_kill(log, "victim")
        wait_until(
            "every task to finish",
            lambda: len({line[1:3] for line in read(log) if line[0] == "end"}) == 4 * 15,
        )
        client = redis.Redis.from_url(url, decode_responses=True)
        wait_until("the stream to empty", lambda: client.zcard(f"{stream}:live") == 0)
        assert not client.keys(f"{stream}:kq:*")  # no key line left behind
        client.close()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    lines = read(log)
    again = check_intervals(lines, expected)
    assert again["a"][:1] == [0]  # the victim's task of key a was reclaimed and rerun
    rerun = next(line for line in lines if line[:3] == ("start", "a", 0) and line[3] != "victim")
    # released by its lease expiring (1 s, renewed every third), never at once
    assert rerun[4] >= killed_at + 0.5
    workers = {line[3] for line in lines if line[0] == "end"}
    assert {"b", "c"} <= workers


def test_a_killed_sqlite_owner_keeps_every_key_in_order_across_restarts(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    log = tmp_path / "runs.log"
    count = 25
    enqueue(SQLiteStore(db), [task(key, n, priority=n % 10) for n in range(count) for key in KEYS])
    total = len(KEYS) * count

    def run(consumer: str, backend: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{consumer}.err", "wb") as err:
            return subprocess.Popen(
                [sys.executable, WORKER, "sqlite", str(db), consumer, str(log), backend],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def ends() -> int:
        return len({line[1:3] for line in read(log) if line[0] == "end"})

    for round_, backend in enumerate(("asyncio", "trio")):
        consumer = f"owner{round_}"
        proc = run(consumer, backend)
        target = ends() + 15
        wait_until(f"{consumer} to be busy", lambda t=target: ends() >= t)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        note_kill(log, consumer)
    last = run("owner-last", "asyncio")
    assert last.wait(timeout=120) == 0, (tmp_path / "owner-last.err").read_text()
    lines = read(log)
    check_intervals(lines, {key: list(range(count)) for key in KEYS})
    assert ends() >= total
    assert any(line[0] == "kill" for line in lines)
