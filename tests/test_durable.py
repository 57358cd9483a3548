"""Durable TaskQueue on a real SQLite file: persistence, validation, retries, DLQ, idempotency."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
from corral import Retry, SQLiteStore, TaskDeadLettered, exponential
from corral.store import NewTask, StoreCorrupt, StoreError
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

seen: list[Any] = []
gates: dict[str, anyio.Event] = {}
failures_left: dict[str, int] = {}


@corral.task(name="tests.echo")
async def echo(value: Any) -> Any:
    seen.append(value)
    return value


@corral.task(name="tests.wait_for")
async def wait_for(gate: str) -> str:
    await gates[gate].wait()
    return gate


@corral.task(name="tests.flaky", retry=Retry(5, backoff=exponential(0.001, 0.002)))
async def flaky(label: str) -> str:
    left = failures_left.get(label, 0)
    if left:
        failures_left[label] = left - 1
        raise ConnectionError(f"{label}: transient")
    return label


@corral.task(name="tests.broken", retry=Retry(3, backoff=exponential(0.001, 0.001)))
async def broken() -> None:
    raise ValueError("always broken")


@corral.task(name="tests.picky", retry=Retry(5, retry_on=(ConnectionError,)))
async def picky() -> None:
    raise KeyError("not retryable")


@corral.task(name="tests.slow_retry", retry=Retry(3, backoff=exponential(30, 30), jitter="none"))
async def slow_retry(label: str) -> str:
    left = failures_left.get(label, 0)
    if left:
        failures_left[label] = left - 1
        raise ConnectionError("later")
    return label


async def plain(value: int) -> int:
    return value


def sync_task(value: int) -> int:
    return value


corral.task(name="tests.sync")(sync_task)


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()
    gates.clear()
    failures_left.clear()


def rows(db: Path, table: str = "tasks") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT id, name, payload, attempts FROM {table}").fetchall()
    finally:
        conn.close()


def queue(db: Path, **kwargs: Any) -> corral.TaskQueue:
    kwargs.setdefault("registry", CollectorRegistry())
    return corral.TaskQueue(
        "durable",
        workers=kwargs.pop("workers", 4),
        capacity=kwargs.pop("capacity", 100),
        store=SQLiteStore(db),
        **kwargs,
    )


async def test_submit_returns_once_the_row_is_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    gates["g"] = anyio.Event()
    async with queue(db) as q:
        handle = await q.submit(wait_for, "g")
        # Another connection (think: another process after a crash) sees the row now.
        (row,) = rows(db)
        assert row[0] == handle.id and row[1] == "tests.wait_for"
        assert row[2] == '{"args":["g"],"kwargs":{}}'
        gates["g"].set()
        assert await handle == "g"
    assert rows(db) == []  # deleted on success


async def test_submit_nowait_is_durable_after_persisted(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    gates["g"] = anyio.Event()
    async with queue(db) as q:
        handle = q.submit_nowait(wait_for, "g")
        assert isinstance(handle, corral.DurableHandle)
        await handle.persisted()
        assert [r[0] for r in rows(db)] == [handle.id]
        gates["g"].set()
        assert await handle == "g"


async def test_many_concurrent_submits_all_run_once(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    handles: list[corral.TaskHandle[Any]] = []
    async with queue(db, workers=8, capacity=1000) as q:

        async def submitter(base: int) -> None:
            for i in range(20):
                handles.append(await q.submit(echo, base + i))

        async with anyio.create_task_group() as tg:
            for base in range(0, 1000, 20):
                tg.start_soon(submitter, base)
    assert sorted(seen) == list(range(1000))
    assert sorted([h.result() for h in handles]) == list(range(1000))
    assert rows(db) == []


def deep(levels: int, leaf: Any = None) -> Any:
    value: Any = leaf
    for _ in range(levels):
        value = [value]
    return value


def cyclic() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


class SmallLookingInt(int):
    """An int that lies about its size: the encoder still refuses it, as a TypeError."""

    def bit_length(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "message"),
    [
        (plain, (1,), {}, "not a registered task"),
        (lambda: None, (), {}, "cannot run a lambda"),
        (echo, ({1, 2},), {}, "argument 0 is a set"),
        (echo, ((1, 2),), {}, "JSON has no tuples"),
        (echo, (math.nan,), {}, "NaN"),
        (echo, ({1: "a"},), {}, "keys must be strings"),
        (echo, ([object()],), {}, r"argument 0\[0\] is a object"),
        (echo, (), {"value": b"raw"}, "keyword argument 'value' is a bytes"),
        (sync_task, (1,), {}, "not an async function"),
        (echo, (10**5000,), {}, "argument 0 is an int of about 5000 digits"),
        (echo, ([1, [2, -(10**5000)]],), {}, r"argument 0\[1\]\[1\] is an int"),
        (echo, (), {"value": {"n": 10**5000}}, r"keyword argument 'value'\['n'\] is an int"),
        (echo, (deep(5000),), {}, "nested more than 100 levels deep"),
        (echo, (), {"value": deep(5000, {})}, "nested more than 100 levels deep"),
        (echo, (cyclic(),), {}, "refers to itself"),
        (echo, (SmallLookingInt(10**5000),), {}, "cannot be stored as JSON"),
    ],
)
async def test_bad_tasks_raise_type_error_before_anything_is_stored(
    tmp_path: Path, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    db = tmp_path / "tasks.db"
    async with queue(db) as q:
        with pytest.raises(TypeError, match=message):
            await q.submit(fn, *args, **kwargs)
        with pytest.raises(TypeError, match=message):
            q.submit_nowait(fn, *args, **kwargs)
        with pytest.raises(TypeError, match="must be a str"):
            await q.submit(echo, 1, idempotency_key=42)  # type: ignore[arg-type]
    assert rows(db) == []


async def test_large_but_faithful_arguments_round_trip(tmp_path: Path) -> None:
    big, nested = 10**4000, deep(97, {"leaf": [1.5]})  # 100 levels in all
    async with queue(tmp_path / "tasks.db") as q:
        assert await (await q.submit(echo, [big, nested])) == [big, nested]


async def test_transient_failures_are_retried_and_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    failures_left["a"] = 2
    async with queue(tmp_path / "tasks.db", registry=registry) as q:
        assert await (await q.submit(flaky, "a")) == "a"
        retries = registry.get_sample_value(
            "corral_task_retries_total", {"queue": "durable", "task": "tests.flaky"}
        )
    assert retries == 2


async def test_final_failure_goes_to_the_dead_letter_table(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    registry = CollectorRegistry()
    async with queue(db, registry=registry) as q:
        handle = await q.submit(broken)
        with pytest.raises(TaskDeadLettered, match="after 3 attempt") as info:
            await handle
        assert isinstance(info.value.__cause__, ValueError)
        assert registry.get_sample_value("corral_store_dead_letters", {"queue": "durable"}) == 1
        assert registry.get_sample_value("corral_store_pending", {"queue": "durable"}) == 0
        commits = registry.get_sample_value(
            "corral_store_commit_seconds_count", {"queue": "durable"}
        )
        assert commits is not None and commits >= 1
    async with SQLiteStore(db) as store:
        (dead,) = await store.list_dead()
    assert (dead.id, dead.attempts, dead.name) == (handle.id, 3, "tests.broken")
    assert dead.last_error == "ValueError: always broken"
    assert dead.last_traceback is not None and "always broken" in dead.last_traceback


async def test_errors_outside_retry_on_dead_letter_at_once(tmp_path: Path) -> None:
    async with queue(tmp_path / "tasks.db") as q:
        with pytest.raises(TaskDeadLettered, match="after 1 attempt"):
            await (await q.submit(picky))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_retry_waits_for_not_before_on_a_fake_clock(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    clock = FakeClock()
    failures_left["s"] = 1
    q = queue(db)
    assert q._durable is not None
    q._durable.clock = clock
    async with q:
        handle = await q.submit(slow_retry, "s")
        # The first attempt fails; the retry is stored 30 s (no jitter) in the future.
        with anyio.fail_after(5):
            while not rows(db) or rows(db)[0][3] != 1 or failures_left["s"]:
                await anyio.sleep(0.005)
            async with SQLiteStore(db) as store:
                while (await store.get(handle.id)).state != "pending":  # type: ignore[union-attr]
                    await anyio.sleep(0.005)
                record = await store.get(handle.id)
        assert record is not None and record.not_before == clock.now + 30
        assert record.last_error == "ConnectionError: later"
        clock.now += 29
        q._durable.wake()
        await anyio.sleep(0.05)
        assert not handle.done()  # not hastened
        clock.now += 1
        q._durable.wake()
        with anyio.fail_after(5):
            assert await handle == "s"


async def test_idempotency_key_under_concurrent_duplicates(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    gates["g"] = anyio.Event()
    handles: list[corral.TaskHandle[Any]] = []
    async with queue(db) as q:

        async def submitter() -> None:
            handles.append(await q.submit(wait_for, "g", idempotency_key="order-42"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(submitter)
        nowait = q.submit_nowait(wait_for, "g", idempotency_key="order-42")
        assert all(h is handles[0] for h in handles) and nowait is handles[0]
        assert len(rows(db)) == 1
        gates["g"].set()
        assert await handles[0] == "g"
        # After success the key still answers with the first result, without running again.
        again = await q.submit(echo, "other", idempotency_key="order-42")
        assert again.id == handles[0].id and await again == "g"
        assert seen == []


async def test_idempotency_key_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with queue(db) as q:
        first = await q.submit(echo, 7, idempotency_key="k")
        assert await first == 7
    async with queue(db) as q:
        second = await q.submit(echo, 8, idempotency_key="k")
        assert second.id == first.id and await second == 7
        dead = await q.submit(broken, idempotency_key="dead-key")
        with pytest.raises(TaskDeadLettered):
            await dead
    async with queue(db) as q:
        again = await q.submit(broken, idempotency_key="dead-key")
        with pytest.raises(TaskDeadLettered, match="always broken"):
            await again
    assert seen == [7]


async def test_replays_pending_and_interrupted_tasks(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    now = time.time()

    def task(value: int, max_attempts: int = 3) -> NewTask:
        return NewTask(
            id=f"t{value}",
            queue="durable",
            name="tests.echo",
            payload=f'{{"args":[{value}],"kwargs":{{}}}}',
            max_attempts=max_attempts,
            not_before=now,
            created_at=now,
        )

    async with SQLiteStore(db) as store:
        await store.enqueue([task(1), task(2), task(3, max_attempts=1)])
        await store.claim("durable", limit=2, now=now)  # t1, t2 "running" when we "died"
        await store.enqueue([task(4)])
    async with queue(db):
        pass  # leaving the block drains what is due
    # t1, t2: interrupted with budget left, re-run; t3 never started; t4 queued later.
    assert sorted(seen) == [1, 2, 3, 4]
    async with SQLiteStore(db) as store:
        assert await store.list_tasks() == []
        assert await store.list_dead() == []


async def test_interrupted_last_attempt_is_dead_lettered_not_rerun(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    now = time.time()
    async with SQLiteStore(db) as store:
        await store.enqueue(
            [
                NewTask("last", "durable", "tests.echo", '{"args":[1]}', 1, now, now),
                NewTask("more", "durable", "tests.echo", '{"args":[2]}', 2, now, now),
            ]
        )
        await store.claim("durable", limit=2, now=now)
    async with queue(db):
        pass
    assert seen == [2]
    async with SQLiteStore(db) as store:
        (dead,) = await store.list_dead()
    assert dead.id == "last" and dead.last_error is not None
    assert "process exited" in dead.last_error


async def test_unknown_task_name_is_dead_lettered_with_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    now = time.time()
    async with SQLiteStore(db) as store:
        await store.enqueue([NewTask("x", "durable", "gone.task", '{"args":[]}', 3, now, now)])
    async with queue(db):
        pass
    async with SQLiteStore(db) as store:
        (dead,) = await store.list_dead()
    assert dead.last_error is not None and "no task registered under the name 'gone.task'" in (
        dead.last_error
    )


async def test_capacity_bounds_unfinished_durable_tasks(tmp_path: Path) -> None:
    gates["g"] = anyio.Event()
    async with queue(tmp_path / "tasks.db", workers=1, capacity=2) as q:
        first = await q.submit(wait_for, "g")
        second = q.submit_nowait(wait_for, "g")
        with pytest.raises(corral.QueueFull, match="capacity 2"):
            q.submit_nowait(wait_for, "g")
        with pytest.raises(corral.QueueFull, match="stayed full"):
            await q.submit(wait_for, "g", timeout=0.05)

        async def late() -> corral.TaskHandle[Any]:
            return await q.submit(echo, "late", timeout=5)

        gates["g"].set()
        third = await late()
        assert [await first, await second, await third] == ["g", "g", "late"]


async def test_closing_keeps_future_retries_stored(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    failures_left["later"] = 1
    async with queue(db) as q:
        handle = await q.submit(slow_retry, "later")
        with anyio.fail_after(5):
            while not rows(db) or rows(db)[0][3] != 1 or failures_left["later"]:
                await anyio.sleep(0.005)
    with pytest.raises(corral.TaskCancelled, match="stays stored"):
        await handle
    ((task_id, _, _, attempts),) = rows(db)
    assert (task_id, attempts) == (handle.id, 1)
    with pytest.raises(corral.QueueClosed):
        await q.submit(echo, 1)


async def test_option_errors_are_clear(tmp_path: Path) -> None:
    async with corral.TaskQueue("plain", workers=1, capacity=1, registry=CollectorRegistry()) as q:
        with pytest.raises(TypeError, match="needs a durable queue"):
            q.submit_nowait(echo, 1, idempotency_key="k")
    async with queue(tmp_path / "tasks.db") as q:
        with pytest.raises(TypeError, match="key= must be a str in durable mode"):
            await q.submit(echo, 1, key=7)
    with pytest.raises(TypeError, match="not a corral task store"):
        corral.TaskQueue("bad", workers=1, capacity=1, store="tasks.db")  # type: ignore[arg-type]


async def test_foreign_file_fails_the_queue_open_clearly(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    db.write_text("not a database")
    with pytest.raises(StoreCorrupt, match="not a SQLite database"):
        async with queue(db):
            pass
    assert db.read_text() == "not a database"


async def test_disk_full_fails_the_handle_and_acknowledges_nothing(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    store = SQLiteStore(db, max_bytes=64 * 1024)
    big = "x" * 4000
    acknowledged: list[str] = []
    async with corral.TaskQueue(
        "durable", workers=1, capacity=10_000, store=store, registry=CollectorRegistry()
    ) as q:
        gates["g"] = anyio.Event()
        await q.submit(wait_for, "g")  # keep the worker busy: rows stay in the table
        with pytest.raises(StoreError, match="full"):
            for _ in range(100):
                acknowledged.append((await q.submit(echo, big)).id)
        nowait = q.submit_nowait(echo, big)
        with pytest.raises(StoreError, match="full"):
            await nowait.persisted()
        with pytest.raises(StoreError):
            await nowait
        stored = {r[0] for r in rows(db)}
        assert set(acknowledged) <= stored and nowait.id not in stored
        gates["g"].set()


@corral.task(name="tests.returns_set")
async def returns_set() -> set[int]:
    return {1, 2}


async def test_results_that_are_not_json_stay_in_process(tmp_path: Path) -> None:
    async with queue(tmp_path / "tasks.db") as q:
        handle = await q.submit(returns_set, idempotency_key="set")
        assert await handle == {1, 2}
        assert handle.cancel() is False  # durable tasks are repaired through the store
        again = await q.submit(returns_set, idempotency_key="set")
        assert again.id == handle.id and await again is None  # stored result: null


async def test_hard_shutdown_puts_the_running_task_back(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    gates["never"] = anyio.Event()
    async with queue(db) as q:
        handle = await q.submit(wait_for, "never")
        with anyio.fail_after(5):
            while not rows(db) or rows(db)[0][3] != 1:  # claimed: the attempt is counted
                await anyio.sleep(0.005)
        await q.aclose(timeout=0.05)
    with pytest.raises(corral.TaskCancelled):
        await handle
    async with SQLiteStore(db) as store:
        record = await store.get(handle.id)
    assert record is not None and (record.state, record.attempts) == ("pending", 1)
    assert record.last_error == "cancelled while running (queue shutdown)"
    gates["never"].set()
    async with queue(db):
        pass  # the next start runs it
    assert rows(db) == []


async def test_duplicate_of_a_task_stored_by_an_earlier_run(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    clock = FakeClock()
    failures_left["k"] = 1
    first = queue(db)
    assert first._durable is not None
    first._durable.clock = clock
    async with first as q:
        original = await q.submit(slow_retry, "k", idempotency_key="K")
        with anyio.fail_after(5):
            while failures_left["k"]:
                await anyio.sleep(0.005)
    second = queue(db)
    assert second._durable is not None
    second._durable.clock = clock
    async with second as q:
        duplicate = await q.submit(slow_retry, "other", idempotency_key="K")
        assert duplicate.id == original.id and not duplicate.done()
        clock.now += 31
        q._durable.wake()  # type: ignore[union-attr]
        with anyio.fail_after(5):
            assert await duplicate == "k"  # the stored task ran, with its own arguments


async def test_exhausted_budget_is_dead_lettered_without_running(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    now = time.time()
    async with SQLiteStore(db) as store:
        await store.enqueue([NewTask("over", "durable", "tests.echo", '{"args":[1]}', 2, now, now)])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET attempts = 5")  # e.g. a budget lowered by hand
    conn.commit()
    conn.close()
    async with queue(db):
        pass
    assert seen == []
    async with SQLiteStore(db) as store:
        (dead,) = await store.list_dead()
    assert dead.last_error == "attempt budget exhausted (2 starts)"


def test_runner_needs_a_slot() -> None:
    from corral.durable import DurableRunner

    with pytest.raises(ValueError, match="slots must be >= 1"):
        DurableRunner("q", SQLiteStore("unused.db"), dispatch=print, slots=0, capacity=1)


@corral.task(name="tests.stuck", timeout=0.05, retry=Retry(2, backoff=exponential(0.001, 0.001)))
async def stuck() -> None:
    await anyio.sleep_forever()


async def test_stuck_attempts_time_out_and_end_in_the_dead_letter_table(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with queue(db) as q:
        handle = await q.submit(stuck)
        with anyio.fail_after(5), pytest.raises(TaskDeadLettered, match="after 2 attempt"):
            await handle
    async with SQLiteStore(db) as store:
        (dead,) = await store.list_dead()
    assert dead.last_error is not None and dead.last_error.startswith("TimeoutError")
