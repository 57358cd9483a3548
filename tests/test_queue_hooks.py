"""on_error hooks, observers, the default queue behind corral.spawn, and stats()."""

from __future__ import annotations

import logging

import anyio
import anyio.from_thread
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


def make(name: str = "hooks", **kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {"workers": 2, "capacity": 10, "registry": CollectorRegistry()}
    options.update(kwargs)
    return corral.TaskQueue(name, **options)  # type: ignore[arg-type]


async def ok(value: int) -> int:
    await anyio.sleep(0)
    return value


async def fail(message: str) -> None:
    await anyio.sleep(0)
    raise ValueError(message)


class Recorder(corral.Observer):
    slow_submit_threshold = 0.0

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_submit(self, task: corral.TaskInfo) -> None:
        self.events.append(("submit", task.name))

    def on_start(self, task: corral.TaskInfo) -> None:
        self.events.append(("start", task.name))

    def on_complete(self, task: corral.TaskInfo, outcome: str, error: BaseException | None) -> None:
        self.events.append(("complete", task.name, outcome, type(error).__name__))

    def on_reject(self, queue: str, task: str, error: Exception) -> None:
        self.events.append(("reject", queue, task, type(error).__name__))

    def on_slow_submit(self, task: corral.TaskInfo, waited: float) -> None:
        self.events.append(("slow", task.name))


async def test_on_error_hooks_get_task_info_and_exception_sync_or_async() -> None:
    seen: list[tuple[str, str, str]] = []

    def sync_hook(task: corral.TaskInfo, exc: Exception) -> None:
        seen.append(("sync", task.name, str(exc)))

    async def async_hook(task: corral.TaskInfo, exc: Exception) -> None:
        await anyio.sleep(0)
        seen.append(("async", task.queue, task.id))

    async with make(on_error=[sync_hook, async_hook]) as q:
        handle = q.submit_nowait(fail, "bad input")
        with pytest.raises(ValueError):
            await handle
        await q.aclose()
    assert seen == [("sync", "fail", "bad input"), ("async", "hooks", handle.id)]


async def test_raising_hooks_and_observers_are_logged_and_never_break_the_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_hook(task: corral.TaskInfo, exc: Exception) -> None:
        raise RuntimeError("hook is broken")

    class BadObserver(corral.Observer):
        def on_start(self, task: corral.TaskInfo) -> None:
            raise RuntimeError("observer is broken")

        def on_complete(
            self, task: corral.TaskInfo, outcome: str, error: BaseException | None
        ) -> None:
            raise RuntimeError("observer is broken")

    caplog.set_level(logging.ERROR, logger="corral.queue")
    async with make(workers=1, on_error=[bad_hook], observers=[BadObserver()]) as q:
        with pytest.raises(ValueError):
            await q.submit_nowait(fail, "x")
        assert await q.submit_nowait(ok, 3) == 3  # the only worker survived
    messages = [r.getMessage() for r in caplog.records]
    assert any("on_error hook" in m for m in messages)
    assert any("observer hook" in m for m in messages)


async def test_observers_see_the_lifecycle_in_order() -> None:
    recorder = Recorder()
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=1, observers=[recorder]) as q:
        assert await q.submit_nowait(ok, 1) == 1
        with pytest.raises(ValueError):
            await q.submit_nowait(fail, "no")
        q.submit_nowait(wait)
        await anyio.wait_all_tasks_blocked()
        q.submit_nowait(wait)
        with pytest.raises(corral.QueueFull):
            q.submit_nowait(ok, 2)

        async def open_gate() -> None:
            await anyio.wait_all_tasks_blocked()
            gate.set()

        async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="test"
            tg.start_soon(open_gate)
            await q.submit(ok, 4, timeout=5)  # waits for room: a slow submit at threshold 0
    events = recorder.events
    assert events[:6] == [
        ("submit", "ok"),
        ("start", "ok"),
        ("complete", "ok", "success", "NoneType"),
        ("submit", "fail"),
        ("start", "fail"),
        ("complete", "fail", "error", "ValueError"),
    ]
    assert ("reject", "hooks", "ok", "QueueFull") in events
    assert ("slow", "ok") in events
    assert events.count(("complete", "ok", "success", "NoneType")) == 2


async def test_observer_without_hooks_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="defines none of on_submit"):
        make(observers=[object()])


async def test_unhandled_failures_are_logged_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="corral.queue")
    async with make() as q:
        with pytest.raises(ValueError):
            await q.submit_nowait(fail, "nobody handles this")
    [record] = [r for r in caplog.records if r.name == "corral.queue"]
    assert "hooks/fail" in record.getMessage()
    assert record.exc_info is not None and "nobody handles this" in str(record.exc_info[1])


async def test_failing_done_callback_does_not_kill_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def bad_callback(handle: corral.TaskHandle[int]) -> None:
        raise RuntimeError("callback is broken")

    async with make(workers=1) as q:
        handle = q.submit_nowait(ok, 1)
        handle.add_done_callback(bad_callback)
        handle.add_done_callback(lambda h: calls.append(f"second saw {h.result()}"))
        assert await handle == 1
        assert await q.submit_nowait(ok, 2) == 2
    assert calls == ["second saw 1"]
    assert any("done callback" in r.getMessage() for r in caplog.records)


async def test_spawn_uses_the_default_queue_and_explains_when_there_is_none() -> None:
    with pytest.raises(corral.NoDefaultQueue, match=r"default=True"):
        corral.spawn(ok, 1)
    async with make("background", default=True) as q:
        assert corral.default_queue() is q
        assert await corral.spawn(ok, 5) == 5
        with pytest.raises(corral.CorralError, match="already the default"):
            async with make("second", default=True):
                pass  # pragma: no cover
        assert corral.default_queue() is q  # the failed second default changed nothing
    with pytest.raises(corral.NoDefaultQueue):
        corral.spawn(ok, 1)


def test_spawn_from_another_thread_points_to_corral_sync(anyio_backend: str) -> None:
    """The queue runs in a portal's loop thread; spawn from this thread must refuse."""

    async def open_default() -> corral.TaskQueue:
        return make("threaded", default=True)

    with anyio.from_thread.start_blocking_portal(anyio_backend) as portal:
        q = portal.call(open_default)
        with portal.wrap_async_context_manager(q):
            with pytest.raises(corral.NoDefaultQueue, match=r"corral\.sync\.spawn"):
                corral.spawn(ok, 1)
            # The queue itself works from its loop thread, and handles resolve there.
            handle = portal.call(q.submit, ok, 7)
            assert portal.call(_await, handle) == 7


async def _await(handle: corral.TaskHandle[int]) -> int:
    return await handle


async def test_stats_count_every_outcome() -> None:
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=2, on_error=[lambda _t, _e: None]) as q:
        await q.submit_nowait(ok, 1)
        with pytest.raises(ValueError):
            await q.submit_nowait(fail, "x")
        q.submit_nowait(wait)
        await anyio.wait_all_tasks_blocked()
        cancelled = q.submit_nowait(wait)
        q.submit_nowait(wait)
        with pytest.raises(corral.QueueFull):
            q.submit_nowait(wait)
        mid = q.stats()
        assert (mid.depth, mid.busy, mid.workers, mid.capacity) == (2, 1, 1, 2)
        cancelled.cancel()
        gate.set()
    stats = q.stats()
    assert stats.name == "hooks"
    assert (stats.submitted, stats.rejected) == (5, 1)
    assert (stats.completed, stats.failed, stats.cancelled) == (3, 1, 1)
    assert (stats.depth, stats.busy) == (0, 0)


async def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        corral.TaskQueue("x", workers=0, capacity=1)
    with pytest.raises(ValueError, match="capacity must be an int >= 1"):
        corral.TaskQueue("x", workers=1, capacity=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        corral.TaskQueue("", workers=1, capacity=1)
    with pytest.raises(TypeError, match=r"middleware\[0\] is not callable"):
        corral.TaskQueue("x", workers=1, capacity=1, middleware=[42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"on_error\[0\] is not callable"):
        corral.TaskQueue("x", workers=1, capacity=1, on_error=[42])  # type: ignore[list-item]
    q = make()
    async with q:
        with pytest.raises(TypeError, match="is not callable"):
            q.submit_nowait(42)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="opened only once"):
        async with q:
            pass  # pragma: no cover
