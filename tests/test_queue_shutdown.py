"""Cancellation and shutdown: handle.cancel(), drain vs hard stop, submitter cancellation."""

from __future__ import annotations

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


def make(**kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {"workers": 2, "capacity": 100, "registry": CollectorRegistry()}
    options.update(kwargs)
    return corral.TaskQueue("shutdown", **options)  # type: ignore[arg-type]


async def test_cancel_a_queued_task_skips_it_and_frees_its_slot() -> None:
    gate = anyio.Event()
    ran: list[str] = []

    async def block() -> None:
        await gate.wait()

    async def record(name: str) -> None:
        ran.append(name)

    async with make(workers=1, capacity=2) as q:
        blocker = q.submit_nowait(block)
        await anyio.wait_all_tasks_blocked()
        doomed = q.submit_nowait(record, "doomed")
        q.submit_nowait(record, "kept")
        assert doomed.cancel() is True
        assert doomed.cancel() is False  # already cancelled
        assert q.stats().depth == 1
        q.submit_nowait(record, "room")  # the cancelled task's slot is free again
        gate.set()
        await blocker
    assert ran == ["kept", "room"]
    with pytest.raises(corral.TaskCancelled, match="before it started"):
        await doomed
    assert doomed.cancelled()
    assert q.stats().cancelled == 1


async def test_cancel_a_running_task_cancels_only_that_task() -> None:
    started = anyio.Event()
    cleanup: list[str] = []

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleanup.append("finally ran")

    async def echo(value: int) -> int:
        await anyio.sleep(0)
        return value

    async with make(workers=1) as q:
        running = q.submit_nowait(forever)
        await started.wait()
        queued = [q.submit_nowait(echo, i) for i in range(3)]
        assert running.cancel() is True
        with pytest.raises(corral.TaskCancelled, match="while running"):
            await running
        # The same single worker carries on with the queued tasks.
        assert [await h for h in queued] == [0, 1, 2]
        assert await q.submit_nowait(echo, 9) == 9
    assert cleanup == ["finally ran"]
    stats = q.stats()
    assert (stats.cancelled, stats.completed) == (1, 4)


async def test_task_that_swallows_cancellation_does_not_break_the_worker() -> None:
    started = anyio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            return "ignored the cancel"
        return "unreachable"

    async def echo(value: int) -> int:
        await anyio.sleep(0)
        return value

    async with make(workers=1) as q:
        handle = q.submit_nowait(stubborn)
        await started.wait()
        handle.cancel()
        assert await handle == "ignored the cancel"
        assert await q.submit_nowait(echo, 5) == 5


async def test_leaving_the_block_drains_queued_and_running_tasks() -> None:
    done: list[int] = []

    async def work(i: int) -> None:
        await anyio.sleep(0.001)
        done.append(i)

    async with make(workers=2) as q:
        handles = [q.submit_nowait(work, i) for i in range(20)]
    assert sorted(done) == list(range(20))
    assert all(h.done() and h.exception() is None for h in handles)
    assert q.stats().busy == 0


async def test_aclose_timeout_cancels_running_and_unstarted_tasks() -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    async with make(workers=1) as q:
        running = q.submit_nowait(forever)
        waiting = [q.submit_nowait(forever) for _ in range(3)]
        await started.wait()
        with anyio.fail_after(5):
            await q.aclose(timeout=0.05)
        # Code after aclose() in the block still runs: the hard stop hits only workers.
        after_close = True
        await q.aclose()  # double close is a no-op
    assert after_close
    with pytest.raises(corral.TaskCancelled, match="while running"):
        await running
    for handle in waiting:
        with pytest.raises(corral.TaskCancelled, match="shutdown"):
            await handle
    assert q.stats().cancelled == 4
    assert q.stats().depth == 0


async def test_keyed_tasks_parked_at_shutdown_resolve_as_cancelled() -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    async with make(workers=2) as q:
        head = q.submit_nowait(forever, key="k")
        parked = [q.submit_nowait(forever, key="k") for _ in range(3)]
        await started.wait()
        await anyio.wait_all_tasks_blocked()  # the second worker parks the followers behind "k"
        await q.aclose(timeout=0)
    for handle in [head, *parked]:
        with pytest.raises(corral.TaskCancelled):
            await handle
    assert q._keys == {}


async def test_exception_in_the_block_cancels_the_queue() -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    q = make()
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="service failed"):
        async with q:
            handle = q.submit_nowait(forever)
            await started.wait()
            raise RuntimeError("service failed")
    with pytest.raises(corral.TaskCancelled):
        await handle


async def test_host_cancellation_stops_the_queue_and_resolves_handles() -> None:
    started = anyio.Event()
    handles: list[corral.TaskHandle[None]] = []

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    async def service() -> None:
        async with make() as q:
            handles.extend(q.submit_nowait(forever) for _ in range(5))
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="test host"
            tg.start_soon(service)
            await started.wait()
            tg.cancel_scope.cancel()
    assert all(h.cancelled() for h in handles)


async def test_submitter_cancellation_does_not_reach_the_task() -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def background() -> str:
        started.set()
        await release.wait()
        return "finished"

    async with make() as q:
        handle_box: list[corral.TaskHandle[str]] = []
        with anyio.CancelScope() as request:
            handle_box.append(q.submit_nowait(background))
            await started.wait()
            request.cancel()
            await anyio.sleep_forever()
        assert request.cancelled_caught
        release.set()
        assert await handle_box[0] == "finished"


async def test_awaiting_a_handle_never_hangs_after_shutdown() -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    async with make(workers=1) as q:
        handles = [q.submit_nowait(forever) for _ in range(10)]
        await q.aclose(timeout=0.01)
    with anyio.fail_after(1):
        for handle in handles:
            with pytest.raises(corral.TaskCancelled):
                await handle


async def test_waiting_submitters_are_released_by_close() -> None:
    gate = anyio.Event()

    async def block() -> None:
        await gate.wait()

    async with make(workers=1, capacity=1) as q:
        q.submit_nowait(block)
        await anyio.wait_all_tasks_blocked()
        q.submit_nowait(block)
        errors: list[Exception] = []

        async def submitter() -> None:
            try:
                await q.submit(block)
            except corral.QueueClosed as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="test"
            tg.start_soon(submitter)
            await anyio.wait_all_tasks_blocked()
            gate.set()
            await q.aclose()
    # Either the submitter got room before the close or it was told the queue closed.
    assert len(errors) in (0, 1)


class Fatal(BaseException):
    """A BaseException that is neither cancellation nor KeyboardInterrupt/SystemExit."""


async def test_base_exceptions_from_a_task_are_never_swallowed() -> None:
    async def fatal() -> None:
        await anyio.sleep(0)
        raise Fatal("stop the world")

    q = make()
    with anyio.fail_after(5), pytest.raises(Fatal, match="stop the world"):
        async with q:
            handle = q.submit_nowait(fatal)
            await anyio.sleep_forever()
    with pytest.raises(corral.TaskCancelled, match="interrupted by Fatal"):
        await handle


async def test_cancelling_a_running_keyed_task_lets_its_line_continue() -> None:
    started = anyio.Event()
    order: list[str] = []

    async def first() -> None:
        started.set()
        await anyio.sleep_forever()

    async def later(name: str) -> None:
        await anyio.sleep(0)
        order.append(name)

    async with make(workers=2) as q:
        head = q.submit_nowait(first, key="k")
        doomed = [q.submit_nowait(later, "cancelled-while-parked", key="k")]
        rest = [q.submit_nowait(later, name, key="k") for name in ("b", "c")]
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        doomed[0].cancel()
        head.cancel()
        for handle in rest:
            await handle
    assert order == ["b", "c"]
    assert q._keys == {}


async def test_concurrent_and_early_closes_are_harmless() -> None:
    never_opened = make()
    await never_opened.aclose()
    with pytest.raises(corral.QueueClosed):
        never_opened.submit_nowait(anyio.sleep, 0)

    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    closed: list[str] = []
    async with make() as q:
        q.submit_nowait(wait)

        async def closer(name: str) -> None:
            await q.aclose()
            closed.append(name)

        async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="test"
            tg.start_soon(closer, "first")
            tg.start_soon(closer, "second")
            await anyio.wait_all_tasks_blocked()
            assert closed == []  # both wait for the drain
            gate.set()
    assert sorted(closed) == ["first", "second"]


async def test_host_cancelled_while_the_block_drains_stops_at_once() -> None:
    started = anyio.Event()
    outcomes: list[str] = []

    class Watch(corral.Observer):
        def on_complete(
            self, task: corral.TaskInfo, outcome: str, error: BaseException | None
        ) -> None:
            outcomes.append(outcome)

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    handles: list[corral.TaskHandle[None]] = []
    with anyio.fail_after(5):
        with anyio.CancelScope() as host:
            async with make(observers=[Watch()]) as q:
                handles.append(q.submit_nowait(forever))
                handles.append(q.submit_nowait(forever))
                handles.append(q.submit_nowait(forever))
                await started.wait()
                host.cancel()  # takes effect while __aexit__ waits for the drain
    assert host.cancelled_caught
    assert all(h.cancelled() for h in handles)
    assert outcomes == ["cancelled"] * 3


async def test_cancelled_queued_tasks_cannot_pile_up_without_bound() -> None:
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=3) as q:
        q.submit_nowait(wait)
        await anyio.wait_all_tasks_blocked()  # the only worker is stuck on the first task
        cancelled = 0
        with pytest.raises(corral.QueueFull, match="of cancelled tasks"):
            for _ in range(100):
                q.submit_nowait(wait).cancel()  # each frees its slot at once...
                cancelled += 1
        assert cancelled == 6  # ...but the stream holds at most 2 x capacity entries
        gate.set()
    assert q.stats().cancelled == 6


async def test_no_task_starts_after_a_hard_stop_even_without_a_checkpoint() -> None:
    """A stop requested while a task runs must not let the worker start queued tasks whose
    body never awaits (cancellation reaches a task only at an await)."""
    ran: list[int] = []
    release = anyio.Event()

    async def blocker() -> None:
        with anyio.CancelScope(shield=True):
            await release.wait()  # keeps running through the stop

    async def no_checkpoint(n: int) -> None:
        ran.append(n)

    async with make(workers=1, capacity=10) as q:
        first = q.submit_nowait(blocker)
        queued = [q.submit_nowait(no_checkpoint, n) for n in range(3)]
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as tg:
            tg.start_soon(q.aclose, 0)
            while not q._stopping:  # the drain window (0 s) has passed: a hard stop
                await anyio.sleep(0.001)
            release.set()
    assert first.done() and not first.cancelled()
    assert ran == []
    assert all(h.cancelled() for h in queued)
