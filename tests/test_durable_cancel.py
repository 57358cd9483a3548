"""Cancel by id on a durable TaskQueue (real SQLite file, real redis-server, both backends).

In-process through ``await queue.cancel(id)``, and from a second process through
``corral tasks cancel`` (a real subprocess): pending tasks never run, running ones are
cancelled at their next checkpoint, handles raise TaskCancelled, nothing is retried or
dead-lettered, and the metrics count the outcome as ``cancelled``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
from corral import RedisStore, Retry, TaskCancelled, exponential
from prometheus_client import CollectorRegistry
from storehelpers import StoreFactory, store_factory

pytestmark = pytest.mark.anyio

runs: list[str] = []
started: dict[str, anyio.Event] = {}


def _started(label: str) -> None:
    runs.append(label)
    event = started.get(label)
    if event is not None:
        event.set()


@corral.task(name="cancel_tests.hold")
async def hold(label: str) -> str:
    _started(label)
    await anyio.sleep_forever()
    return label  # pragma: no cover - never reached


@corral.task(name="cancel_tests.echo")
async def echo(label: str) -> str:
    _started(label)
    return label


@corral.task(name="cancel_tests.stubborn", retry=Retry(5, backoff=exponential(0.001, 0.001)))
async def stubborn(label: str) -> str:
    _started(label)
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        raise RuntimeError("cleanup failed while being cancelled") from None
    return label  # pragma: no cover - never reached


@corral.task(
    name="cancel_tests.backoff", retry=Retry(3, backoff=exponential(30, 30), jitter="none")
)
async def backoff(label: str) -> str:
    _started(label)
    raise ConnectionError(f"{label}: try again later")


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return store_factory(request, tmp_path, "cancel")


def completed(registry: CollectorRegistry, task: str, outcome: str) -> float | None:
    return registry.get_sample_value(
        "corral_tasks_completed_total", {"queue": "cq", "task": task, "outcome": outcome}
    )


async def test_cancel_pending_and_running_tasks_in_process(make_store: StoreFactory) -> None:
    runs.clear()
    started["a"] = anyio.Event()
    registry = CollectorRegistry()
    store = make_store()
    async with corral.TaskQueue("cq", workers=1, capacity=10, store=store, registry=registry) as q:
        running = await q.submit(hold, "a")
        await started["a"].wait()
        waiting = await q.submit(echo, "b")
        assert await q.cancel(waiting.id) == "pending"
        with pytest.raises(TaskCancelled, match="cancelled before it ran"):
            await waiting
        assert await q.cancel(running) == "running"
        with anyio.fail_after(10), pytest.raises(TaskCancelled, match="while running"):
            await running
        record = await store.get(running.id)
        assert record is not None and (record.state, record.attempts) == ("cancelled", 1)
        assert await q.cancel(running.id) == "cancelled"  # finished: nothing changes
        assert await q.cancel("no-such-id") is None
    assert runs == ["a"]  # the cancelled pending task never ran
    assert completed(registry, "cancel_tests.hold", "cancelled") == 1
    assert completed(registry, "cancel_tests.echo", "cancelled") == 1
    assert completed(registry, "cancel_tests.hold", "error") == 0
    async with corral.TaskQueue("cq", workers=1, capacity=10, store=make_store()) as again:
        await anyio.sleep(0.3)  # a restart replays nothing of them
        assert await again.cancel(waiting.id) == "cancelled"
    assert runs == ["a"]


async def test_a_cancelled_attempt_that_raises_is_neither_retried_nor_dead_lettered(
    make_store: StoreFactory,
) -> None:
    runs.clear()
    started["s"] = anyio.Event()
    registry = CollectorRegistry()
    store = make_store()
    async with corral.TaskQueue("cq", workers=2, capacity=10, store=store, registry=registry) as q:
        handle = await q.submit(stubborn, "s")
        await started["s"].wait()
        assert await q.cancel(handle.id) == "running"
        with anyio.fail_after(10), pytest.raises(TaskCancelled, match="cleanup failed"):
            await handle
        await anyio.sleep(0.2)
        assert await store.list_dead() == []
        record = await store.get(handle.id)
        assert record is not None and record.state == "cancelled"
    assert runs == ["s"]
    assert completed(registry, "cancel_tests.stubborn", "cancelled") == 1
    assert completed(registry, "cancel_tests.stubborn", "error") == 0


async def test_a_task_waiting_for_its_retry_is_cancelled_and_never_retried(
    make_store: StoreFactory,
) -> None:
    runs.clear()
    store = make_store()
    async with corral.TaskQueue("cq", workers=1, capacity=10, store=store) as q:
        handle = await q.submit(backoff, "r")
        with anyio.fail_after(10):
            while (record := await store.get(handle.id)) is None or record.attempts == 0:
                await anyio.sleep(0.02)
            while (record := await store.get(handle.id)) is None or record.state != "pending":
                await anyio.sleep(0.02)
        assert record.attempts == 1 and record.not_before > time.time() + 10  # its backoff
        assert await q.cancel(handle.id) == "pending"
        with pytest.raises(TaskCancelled):
            await handle
    assert runs == ["r"]


async def test_cancel_needs_a_durable_queue() -> None:
    async with corral.TaskQueue("mem", workers=1, capacity=1) as q:
        with pytest.raises(TypeError, match=r"handle\.cancel\(\)"):
            await q.cancel("1")


async def test_a_cancel_from_elsewhere_reaches_an_attempt_within_one_check_interval(
    make_store: StoreFactory,
) -> None:
    """The watcher's check that began before the attempt started (at submit) must already
    see it: the check interval bounds the latency, not twice the interval."""
    runs.clear()
    started["late"] = anyio.Event()
    if make_store().__class__ is RedisStore:
        store, elsewhere = make_store(visibility_timeout=6.0), make_store(consumer="elsewhere")
    else:
        store, elsewhere = make_store(cancel_check_every=2.0), make_store()
    interval = store.cancel_check_every  # type: ignore[attr-defined]
    assert interval == 2.0
    async with corral.TaskQueue("cq", workers=1, capacity=10, store=store) as q:
        handle = await q.submit(hold, "late")
        await started["late"].wait()
        async with elsewhere:
            assert await elsewhere.cancel(handle.id) == "running"
        asked = time.monotonic()
        with anyio.fail_after(30), pytest.raises(TaskCancelled):
            await handle
        took = time.monotonic() - asked
    assert took < interval + 1.0, took


def tasks_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.tasks_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_corral_tasks_cancel_from_another_process_reaches_the_owner(
    make_store: StoreFactory, redis_server: Any, tmp_path: Path
) -> None:
    """The second process shares nothing with this one but the store: SQLite's owner
    learns of it by its check (``cancel_check_every``), Redis's through the lease renewal
    (``visibility_timeout / 3``)."""
    runs.clear()
    started["x"] = anyio.Event()
    if make_store().__class__ is RedisStore:
        store = make_store(visibility_timeout=1.5)
        where = ["--redis", redis_server.url, "--stream", store.stream]  # type: ignore[attr-defined]
        bound = 0.5
    else:
        store = make_store(cancel_check_every=0.5)
        where = ["--db", str(tmp_path / "tasks.db")]
        bound = 0.5
    async with corral.TaskQueue("cq", workers=1, capacity=10, store=store) as q:
        running = await q.submit(hold, "x")
        await started["x"].wait()
        waiting = await q.submit(echo, "y")
        proc = await anyio.to_thread.run_sync(
            lambda: tasks_cli(*where, "cancel", running.id[:10], waiting.id[:10])
        )
        asked = time.monotonic()  # the cancel is stored: from here on the bound holds
        assert proc.returncode == 0, proc.stderr
        assert f"cancelling {running.id}: it is running" in proc.stdout
        assert f"cancelled {waiting.id} (it had not started)" in proc.stdout
        with anyio.fail_after(20), pytest.raises(TaskCancelled, match="while running"):
            await running
        reached = time.monotonic() - asked
        with anyio.fail_after(20), pytest.raises(TaskCancelled, match="before it ran"):
            await waiting
    assert runs == ["x"]
    # the check interval, with a wide margin for a busy 2-core machine
    assert reached < bound + 10, reached
    shown = await anyio.to_thread.run_sync(lambda: tasks_cli(*where, "show", running.id[:10]))
    assert shown.returncode == 0 and "state: cancelled" in shown.stdout


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("### Cancel by id") :]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["pending", "running"] and lines[-1] == "cancelled"
    assert "was cancelled before it ran" in lines[2] and "while running" in lines[3]


async def test_a_delayed_task_is_cancelled_before_its_time_and_never_runs(
    make_store: StoreFactory,
) -> None:
    runs.clear()
    registry = CollectorRegistry()
    store = make_store()
    async with corral.TaskQueue("cq", workers=1, capacity=10, store=store, registry=registry) as q:
        later = await q.submit(echo, "later", delay=0.5)
        assert await q.cancel(later.id) == "pending"
        with pytest.raises(TaskCancelled, match="before it ran"):
            await later
        await anyio.sleep(1.0)  # past its time
        record = await store.get(later.id)
        assert record is not None and record.state == "cancelled"
    assert runs == []
    assert completed(registry, "cancel_tests.echo", "cancelled") == 1
