"""Per-key order and priorities of durable queues (real SQLite files, real redis-server),
and the migration of a database written by the previous schema."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
from corral import RedisStore, SQLiteStore
from corral.store import Store
from prometheus_client import CollectorRegistry
from storehelpers import NOW, StoreFactory, new_task, store_factory

pytestmark = pytest.mark.anyio

events: list[tuple[str, str, str]] = []  # (kind, key, label)
gates: dict[str, anyio.Event] = {}


@corral.task(name="order_tests.step")
async def step(key: str, label: str) -> str:
    events.append(("start", key, label))
    gate = gates.get(label)
    if gate is not None:
        await gate.wait()
    else:
        await anyio.sleep(0.001)
    events.append(("end", key, label))
    return label


@pytest.fixture(autouse=True)
def _reset() -> None:
    events.clear()
    gates.clear()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    factory = store_factory(request, tmp_path, "order")
    if request.param == "redis":
        return lambda: factory(consumer="o1")
    return factory


def make_queue(store: Store, workers: int = 4) -> corral.TaskQueue:
    return corral.TaskQueue(
        "ordered", workers=workers, capacity=1000, store=store, registry=CollectorRegistry()
    )


def assert_no_overlap_per_key() -> None:
    running: dict[str, str] = {}
    for kind, key, label in events:
        if key == "-":  # keyless: free to overlap
            continue
        if kind == "start":
            assert key not in running, f"{label} started while {running[key]} of {key} ran"
            running[key] = label
        else:
            assert running.pop(key) == label


async def test_same_key_runs_in_submit_order_and_a_slow_key_blocks_no_other(
    make_store: StoreFactory,
) -> None:
    gates["a0"] = anyio.Event()
    async with make_queue(make_store()) as q:
        slow = await q.submit(step, "a", "a0", key="a")
        behind = [await q.submit(step, "a", f"a{i}", key="a") for i in range(1, 4)]
        others = [await q.submit(step, "b", f"b{i}", key="b") for i in range(5)]
        free = [await q.submit(step, "-", f"f{i}") for i in range(3)]
        with anyio.fail_after(10):
            for handle in others + free:
                await handle  # key b and keyless work finish while a0 holds key a
        assert not slow.done() and not any(h.done() for h in behind)
        assert [label for kind, key, label in events if key == "a"] == ["a0"]
        gates["a0"].set()
        with anyio.fail_after(10):
            assert [await h for h in behind] == ["a1", "a2", "a3"]
    assert_no_overlap_per_key()
    assert [label for kind, key, label in events if kind == "start" and key == "b"] == [
        f"b{i}" for i in range(5)
    ]


async def test_keyed_tasks_keep_their_order_across_a_restart(make_store: StoreFactory) -> None:
    gates["k0"] = anyio.Event()
    async with make_queue(make_store()) as q:
        await q.submit(step, "k", "k0", key="k")
        for i in range(1, 4):
            await q.submit(step, "k", f"k{i}", key="k")
        with anyio.fail_after(10):
            while not events:
                await anyio.sleep(0.01)
        await q.aclose(timeout=0.2)  # k0 is interrupted; k1..k3 stay behind it
    assert [e[2] for e in events] == ["k0"]
    events.clear()
    gates.clear()  # k0 runs through this time
    async with make_queue(make_store()) as q:
        with anyio.fail_after(10):
            while len([e for e in events if e[0] == "end"]) < 4:
                await anyio.sleep(0.01)
    assert [label for kind, _, label in events if kind == "start"] == ["k0", "k1", "k2", "k3"]
    assert_no_overlap_per_key()


async def test_priorities_are_claimed_highest_first_fifo_within(
    make_store: StoreFactory,
) -> None:
    low, mid1, high, mid2, low2 = (
        new_task(priority=0),
        new_task(priority=5),
        new_task(priority=9),
        new_task(priority=5),
        new_task(priority=0),
    )
    keyed_low, keyed_high = new_task(order_key="x"), new_task(order_key="x", priority=9)
    async with make_store() as store:
        await store.enqueue([low, mid1, high, mid2, low2, keyed_low, keyed_high])
        first = await store.claim("q", limit=3, now=NOW)
        assert [t.id for t in first] == [high.id, mid1.id, mid2.id]
        assert [t.priority for t in first] == [9, 5, 5]
        rest = await store.claim("q", limit=10, now=NOW)
        # per-key order beats priority: keyed_high waits for keyed_low
        assert [t.id for t in rest] == [low.id, low2.id, keyed_low.id]
        await store.complete(keyed_low.id, result=None, now=NOW)
        (last,) = await store.claim("q", limit=10, now=NOW)
        assert last.id == keyed_high.id and last.priority == 9


async def test_priority_on_a_durable_queue_end_to_end(make_store: StoreFactory) -> None:
    order: list[str] = []

    async with make_queue(make_store(), workers=1) as q:
        gates["block"] = anyio.Event()
        blocker = await q.submit(step, "-", "block")
        with anyio.fail_after(10):
            while not events:
                await anyio.sleep(0.01)
        handles = [
            await q.submit(step, "-", f"p{p}-{i}", priority=p) for i in range(2) for p in (0, 9, 3)
        ]
        gates["block"].set()
        await blocker
        for handle in handles:
            order.append(await handle)
    started = [label for kind, _, label in events if kind == "start"][1:]
    assert started == ["p9-0", "p9-1", "p3-0", "p3-1", "p0-0", "p0-1"]


async def test_bad_keys_and_priorities_are_refused_clearly(make_store: StoreFactory) -> None:
    async with make_queue(make_store()) as q:
        with pytest.raises(ValueError, match=r"priority must be in 0\.\.9"):
            await q.submit(step, "-", "x", priority=10)
        with pytest.raises(ValueError, match=r"priority must be in 0\.\.9"):
            q.submit_nowait(step, "-", "x", priority=-1)
        with pytest.raises(TypeError, match=r"priority must be an int in 0\.\.9"):
            await q.submit(step, "-", "x", priority=True)
        with pytest.raises(TypeError, match="key= must be a str in durable mode"):
            await q.submit(step, "-", "x", key=("tuple", 1))
        with pytest.raises(ValueError, match="must not be empty"):
            await q.submit(step, "-", "x", key="")
        assert not [e for e in events if e[2] == "x"]


#: The schema as main created it before ordering keys and priorities (user_version 2).
_V2 = (
    "CREATE TABLE corral_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO corral_meta (key, value) VALUES ('application', 'corral-tasks')",
    """CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
        not_before REAL NOT NULL, idempotency_key TEXT, created_at REAL NOT NULL,
        updated_at REAL NOT NULL, last_error TEXT, last_traceback TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'running')))""",
    "CREATE INDEX tasks_due ON tasks (queue, state, not_before, seq)",
    """CREATE UNIQUE INDEX tasks_key ON tasks (queue, idempotency_key)
        WHERE idempotency_key IS NOT NULL""",
    """CREATE TABLE dead_letters (seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, name TEXT NOT NULL,
        payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL, not_before REAL NOT NULL, idempotency_key TEXT,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, last_error TEXT,
        last_traceback TEXT)""",
    "CREATE INDEX dead_letters_queue ON dead_letters (queue, seq)",
    """CREATE INDEX dead_letters_key ON dead_letters (queue, idempotency_key)
        WHERE idempotency_key IS NOT NULL""",
    """CREATE TABLE done (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
        not_before REAL NOT NULL, idempotency_key TEXT, created_at REAL NOT NULL,
        updated_at REAL NOT NULL, last_error TEXT, last_traceback TEXT, result TEXT)""",
    "CREATE INDEX done_key ON done (queue, idempotency_key)",
    "CREATE INDEX done_finished ON done (updated_at)",
    "PRAGMA user_version = 2",
)


def _old_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    for statement in _V2:
        conn.execute(statement)
    row = ("jobs.echo", '{"args":[1],"kwargs":{}}', 3, NOW, NOW, NOW)
    conn.execute(
        "INSERT INTO tasks (id, queue, name, payload, max_attempts, not_before, created_at,"
        " updated_at, state) VALUES ('old-pending', 'q', ?, ?, ?, ?, ?, ?, 'pending')",
        row,
    )
    conn.execute(
        "INSERT INTO dead_letters (id, queue, name, payload, max_attempts, not_before,"
        " created_at, updated_at, last_error) VALUES ('old-dead', 'q', ?, ?, ?, ?, ?, ?, 'x')",
        row,
    )
    conn.commit()
    conn.close()


async def test_a_database_of_the_previous_schema_opens_and_migrates(tmp_path: Path) -> None:
    from corral.store._schema import SCHEMA_VERSION

    db = tmp_path / "old.db"
    _old_database(db)
    async with SQLiteStore(db) as store:
        (old,) = await store.claim("q", limit=10, now=NOW)
        assert (old.id, old.key, old.priority) == ("old-pending", None, 0)
        (dead,) = await store.list_dead()
        assert dead.id == "old-dead" and dead.key is None
        await store.enqueue([new_task(order_key="k", priority=4)])
        await store.complete(old.id, result=None, now=NOW)
        (new,) = await store.claim("q", limit=10, now=NOW)
        assert (new.key, new.priority) == ("k", 4)
        assert await store.requeue_dead(["old-dead"], now=NOW) == ["old-dead"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_redis_priority_streams_keep_leases_and_reclaim(redis_server: Any) -> None:
    """A running task of a priority stream is renewed while its worker lives and taken
    over by another consumer once the lease expires, like a priority-0 task."""
    name = f"order:{uuid.uuid4().hex[:12]}"

    def store(consumer: str) -> RedisStore:
        return RedisStore(redis_server.url, stream=name, consumer=consumer, visibility_timeout=0.6)

    urgent = new_task(priority=5)
    async with store("a") as a, store("b") as b:
        await a.enqueue([urgent])
        (mine,) = await a.claim("q", limit=1, now=NOW)
        assert mine.priority == 5
        await anyio.sleep(1.5)  # a renews its lease every 0.2 s
        assert await b.claim("q", limit=1, now=NOW) == []
        a._leases.clear()  # a stops renewing, as a dead process would
        with anyio.fail_after(10):
            while not (taken := await b.claim("q", limit=1, now=NOW)):
                await anyio.sleep(0.1)
        assert taken[0].id == urgent.id and taken[0].attempts == 2
        await b.complete(urgent.id, result=None, now=NOW)
        stats = (await b.stats())[0]
        assert (stats.pending, stats.running) == (0, 0)


async def test_redis_leases_are_renewed_after_redis_lost_its_scripts(redis_server: Any) -> None:
    """Regression: the renewal ran EVALSHA only, and a Redis whose script cache was empty
    (restarted, or the script never loaded) failed it silently, so live workers' tasks
    (and their keys) were taken over by others after one visibility timeout."""
    import redis

    name = f"order:{uuid.uuid4().hex[:12]}"

    def store(consumer: str) -> RedisStore:
        return RedisStore(redis_server.url, stream=name, consumer=consumer, visibility_timeout=0.6)

    async with store("a") as a, store("b") as b:
        await a.enqueue([new_task(order_key="k")])
        (mine,) = await a.claim("q", limit=1, now=NOW)
        client = redis.Redis.from_url(redis_server.url)
        client.script_flush()
        client.close()
        await anyio.sleep(1.5)
        assert await b.claim("q", limit=1, now=NOW) == []  # still a's
        await a.complete(mine.id, result=None, now=NOW)
