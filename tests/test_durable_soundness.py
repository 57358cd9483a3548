"""Durable queues: middleware wraps one attempt, stored and middleware retries never stack,
and a hard stop puts a hung task back to pending (real SQLite files, both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
from corral import SQLiteStore, middleware
from corral.middleware import CallNext
from corral.task_info import TaskInfo
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

runs: list[str] = []
running_now = 0
most_at_once = 0
hung_started: list[anyio.Event] = []


async def _fail_first_run(label: str) -> str:
    global running_now, most_at_once
    runs.append(label)
    running_now += 1
    most_at_once = max(most_at_once, running_now)
    try:
        await anyio.sleep(0.02)
        if runs.count(label) == 1:
            raise ConnectionError("first attempt fails")
        return f"{label} ok"
    finally:
        running_now -= 1


FAST = corral.Retry(3, backoff=corral.exponential(0.001, 0.001))


@corral.task(name="soundness.fails_once", retry=FAST)
async def fails_once(label: str) -> str:
    return await _fail_first_run(label)


@corral.task(name="soundness.fails_once_stored", retry=FAST)
async def fails_once_stored(label: str) -> str:
    return await _fail_first_run(label)


@corral.task(name="soundness.hangs")
async def hangs() -> None:
    hung_started[-1].set()
    await anyio.sleep_forever()


@pytest.fixture(autouse=True)
def _reset() -> None:
    global running_now, most_at_once
    runs.clear()
    running_now = most_at_once = 0


def durable(db: Path, **kwargs: Any) -> corral.TaskQueue:
    return corral.TaskQueue(
        "durable",
        workers=2,
        capacity=10,
        store=SQLiteStore(db),
        registry=CollectorRegistry(),
        **kwargs,
    )


def test_retry_middleware_on_a_durable_queue_is_refused_with_a_clear_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match=r"middleware\.retry.*store=.*corral\.Retry"):
        durable(tmp_path / "tasks.db", middleware=[middleware.log(), middleware.retry(3)])


async def test_a_retrying_middleware_reruns_the_attempt_not_the_stored_task(
    tmp_path: Path,
) -> None:
    """A hand-written retrying middleware calls ``call_next`` again: that re-runs the task
    inside the same attempt; the store records one attempt and one success; aclose returns."""
    seen: list[tuple[str, int]] = []

    async def retry_once(task: TaskInfo, call_next: CallNext) -> Any:
        seen.append((task.name, task.attempt))
        try:
            return await call_next()
        except Exception:  # what middleware.retry does: any Exception, after a backoff
            await anyio.sleep(0.1)
            return await call_next()

    db = tmp_path / "tasks.db"
    async with durable(db, middleware=[retry_once]) as q:
        with anyio.fail_after(10):
            handle = await q.submit(fails_once, "a")
            assert await handle == "a ok"
        await anyio.sleep(0.3)  # a stored retry would be due (and claimed) by now
        with anyio.move_on_after(5) as bounded:
            await q.aclose()
        assert not bounded.cancelled_caught, "aclose did not return"
    assert runs == ["a", "a"]  # once, then the middleware's retry: never a third run
    assert most_at_once == 1
    assert seen == [("soundness.fails_once", 1)]  # the middleware wrapped one attempt
    async with SQLiteStore(db) as store:
        left = [(s.pending, s.running, s.dead) for s in await store.stats()]
    assert all(counts == (0, 0, 0) for counts in left), left  # completed, nothing left over


async def test_stored_retry_alone_runs_a_task_that_fails_once_twice(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    with anyio.fail_after(20):
        async with durable(db, middleware=[middleware.log()]) as q:
            handle = await q.submit(fails_once_stored, "b")
            assert await handle == "b ok"
    assert runs == ["b", "b"]
    assert most_at_once == 1


async def test_a_hung_task_without_timeout_is_cancelled_and_stays_pending(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    hung_started.append(anyio.Event())
    with anyio.fail_after(20):
        async with durable(db) as q:
            handle = await q.submit(hangs)
            await hung_started[-1].wait()
            with anyio.move_on_after(10) as bounded:
                await q.aclose(timeout=0.2)
            assert not bounded.cancelled_caught, "aclose did not return after its timeout"
    assert handle.done()
    async with SQLiteStore(db) as store:
        (stats,) = await store.stats()
        assert (stats.pending, stats.running) == (1, 0)
        (record,) = await store.list_tasks(queue="durable", state="pending")
        assert record.name == "soundness.hangs"
        assert record.attempts == 1
        assert "shutdown" in (record.last_error or "")
