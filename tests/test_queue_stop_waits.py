"""A hard stop cannot interrupt a task that shields itself from cancellation or blocks in
a thread call that cannot be abandoned: it waits for the task (the queue's block never
ends with a task still running) and logs which task it waits for, so a shutdown that
hangs on one names it. Durable (real SQLite file) and in-memory queues, both backends."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import corral
import pytest
from corral import SQLiteStore
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

started: list[anyio.Event] = []
release: list[anyio.Event] = []


@corral.task(name="stopwaits.shielded")
async def shielded() -> str:
    started[-1].set()
    with anyio.CancelScope(shield=True):
        await release[-1].wait()
    return "returned"


async def blocks_in_thread(go_on: threading.Event, entered: anyio.Event) -> str:
    entered.set()
    await anyio.to_thread.run_sync(go_on.wait)
    return "returned"


def waiting_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "corral.queue" and "ignore cancellation" in r.getMessage()
    ]


async def stop_and_release(
    q: corral.TaskQueue, caplog: pytest.LogCaptureFixture, let_go: Callable[[], None]
) -> list[str]:
    """``aclose(timeout=0.1)``; once the stop has logged which task it waits for (or
    after 5 s without that warning), call ``let_go`` (which lets that task finish) and
    wait for the stop. Returns the warnings."""
    caplog.set_level(logging.WARNING, logger="corral.queue")
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.aclose, 0.1)
        try:
            with anyio.move_on_after(5):
                while not waiting_warnings(caplog):
                    await anyio.sleep(0.01)
        finally:
            let_go()  # without the warning too: the test must fail, not hang
    return waiting_warnings(caplog)


async def test_a_durable_task_shielded_from_cancellation_is_named_while_the_stop_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started.append(anyio.Event())
    release.append(anyio.Event())
    db = tmp_path / "tasks.db"
    with anyio.fail_after(10):
        async with corral.TaskQueue(
            "stopwaits",
            workers=2,
            capacity=10,
            store=SQLiteStore(db),
            registry=CollectorRegistry(),
        ) as q:
            handle = await q.submit(shielded)
            await started[-1].wait()

            running_at_warning: list[bool] = []

            def let_go() -> None:
                running_at_warning.append(not handle.done())
                release[-1].set()

            (message,) = await stop_and_release(q, caplog, let_go)
    assert running_at_warning == [True]  # the stop was still waiting for it
    assert "stopwaits.shielded (id " in message
    assert "1 running task(s)" in message and "durable" in message
    assert await handle == "returned"  # it finished: nothing is left to run again
    async with SQLiteStore(db) as store:
        assert [(s.pending, s.running) for s in await store.stats()] in ([], [(0, 0)])


async def test_a_task_blocked_in_a_thread_is_named_while_the_stop_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    go_on = threading.Event()
    entered = anyio.Event()
    try:
        with anyio.fail_after(10):
            async with corral.TaskQueue(
                "stopwaits-mem", workers=1, capacity=10, registry=CollectorRegistry()
            ) as q:
                handle = q.submit_nowait(blocks_in_thread, go_on, entered)
                queued = q.submit_nowait(blocks_in_thread, go_on, entered)
                await entered.wait()
                (message,) = await stop_and_release(q, caplog, go_on.set)
    finally:
        go_on.set()  # never leave the thread behind, even when the test fails
    assert "blocks_in_thread (id " in message and "to_thread" in message
    assert "durable" not in message
    assert await handle == "returned"
    assert queued.cancelled()  # the stop still drops what never started
