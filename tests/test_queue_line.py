"""The line between a TaskQueue's submitters and its workers (corral._queue_line)."""

from __future__ import annotations

import anyio
import pytest
from corral._queue_line import Line

pytestmark = pytest.mark.anyio


async def test_a_woken_worker_that_is_cancelled_passes_the_wake_up_on() -> None:
    line = Line(room=4)
    woke: list[str] = []

    async def worker(name: str, scope_out: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_out.append(scope)
            await line.wait()
            woke.append(name)

    first: list[anyio.CancelScope] = []
    second: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, "first", first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(worker, "second", second)
        await anyio.wait_all_tasks_blocked()
        assert len(line.idle) == 2
        # The first worker's cancellation is on its way when a submit (what
        # TaskQueue._enqueue does) picks it to wake: it must hand the job to the second.
        first[0].cancel()
        line.jobs.append(object())  # type: ignore[arg-type]
        line.idle.popleft().set()
        with anyio.fail_after(5):
            while not woke:
                await anyio.sleep(0.001)
        assert woke == ["second"]
        assert not line.idle
        line.close()


async def test_a_cancelled_idle_worker_leaves_the_line_and_close_wakes_the_rest() -> None:
    line = Line(room=4)
    done: list[str] = []

    async def worker(name: str) -> None:
        await line.wait()
        done.append(name)

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(worker, "kept")
            await anyio.wait_all_tasks_blocked()
            async with anyio.create_task_group() as inner:
                inner.start_soon(worker, "cancelled")
                await anyio.wait_all_tasks_blocked()
                assert len(line.idle) == 2
                inner.cancel_scope.cancel()
            assert len(line.idle) == 1  # the cancelled waiter took its event with it
            line.close()
        assert not scope.cancel_called
    assert done == ["kept"]
    assert line.closed and not line.idle
