"""corral.TaskGroup: bounded pool, first-error semantics, cancellation, context, backpressure."""

from __future__ import annotations

import contextvars
import random

import anyio
import anyio.abc
import corral
import pytest
from corral import QueueFull, TaskCancelled, TaskGroup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Boom(Exception):
    pass


def live_tasks() -> int:
    return len(anyio.get_running_tasks())


async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def test_results_come_back_through_handles() -> None:
    async with TaskGroup(limit=3, name="double") as g:
        handles = [g.start_soon(double, i) for i in range(20)]
        assert await handles[0] == 0
    assert [h.result() for h in handles] == [2 * i for i in range(20)]
    assert g.errors == []


async def test_keyword_arguments_and_plain_awaitables() -> None:
    async def add(a: int, *, b: int) -> int:
        return a + b

    def later(value: int) -> anyio.Event:
        event = anyio.Event()
        event.set()
        return event  # not awaitable itself: wait() is

    async with TaskGroup() as g:
        h1 = g.start_soon(add, 1, b=2)
        h2 = g.start_soon(lambda: later(1).wait())
    assert h1.result() == 3
    assert h2.result() is None


@pytest.mark.parametrize("limit", [1, 4, 16])
async def test_live_tasks_never_exceed_limit_plus_one(limit: int) -> None:
    baseline = live_tasks()
    running = peak_running = peak_tasks = 0

    async def item() -> None:
        nonlocal running, peak_running, peak_tasks
        running += 1
        peak_running = max(peak_running, running)
        peak_tasks = max(peak_tasks, live_tasks() - baseline)
        await anyio.sleep(0)
        running -= 1

    async with TaskGroup(limit=limit) as g:
        for _ in range(500):
            g.start_soon(item)
    assert peak_running == limit
    assert peak_tasks <= limit + 1
    assert live_tasks() == baseline


async def test_no_limit_runs_everything_at_once() -> None:
    release = anyio.Event()
    started = 0

    async def wait_for_all() -> None:
        nonlocal started
        started += 1
        if started == 50:
            release.set()
        await release.wait()  # would deadlock under any limit below 50

    async with TaskGroup() as g:
        for _ in range(50):
            g.start_soon(wait_for_all)
    assert started == 50


async def test_first_error_is_raised_as_its_own_type_with_the_rest_in_errors() -> None:
    # Each failure waits for the previous one: sleeps alone would not order them, because a
    # loaded loop wakes several sleepers in one batch and trio runs a batch in random order.
    raised = {tag: anyio.Event() for tag in ("first", "second", "third")}

    async def fail(after: str | None, tag: str) -> None:
        if after is not None:
            await raised[after].wait()
            await anyio.sleep(0.01)
        raised[tag].set()
        raise Boom(tag)

    with pytest.raises(Boom) as caught:
        async with TaskGroup(limit=3, cancel_on_error=False, name="fails") as g:
            g.start_soon(fail, "second", "third")
            g.start_soon(fail, None, "first")
            g.start_soon(fail, "first", "second")
    assert str(caught.value) == "first"
    assert [str(e) for e in g.errors] == ["first", "second", "third"]
    notes = caught.value.__notes__
    assert "2 more error(s) in group 'fails'" in notes[0]
    assert notes[1:] == ["  Boom: second", "  Boom: third"]


async def test_cancel_on_error_drops_waiting_items_and_cancels_running_ones() -> None:
    baseline = live_tasks()
    finished: list[int] = []

    async def slow(i: int) -> None:
        await anyio.sleep(10)
        finished.append(i)

    async def fail() -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom("stop")

    with pytest.raises(Boom):
        async with TaskGroup(limit=2) as g:
            running = g.start_soon(slow, 0)
            failing = g.start_soon(fail)
            waiting = [g.start_soon(slow, i) for i in range(1, 6)]
            await anyio.sleep(10)  # the body is cancelled too
            pytest.fail("the body should have been cancelled")
    assert finished == []
    assert isinstance(failing.exception(), Boom)
    assert running.cancelled()
    assert all(h.cancelled() for h in waiting)
    with pytest.raises(TaskCancelled, match="an item failed with Boom"):
        await waiting[0]
    assert live_tasks() == baseline
    late = anyio.Event()
    with pytest.raises(RuntimeError, match="is closed"):
        g.start_soon(late.wait)


async def test_without_cancel_on_error_every_item_runs() -> None:
    done: list[int] = []

    async def maybe_fail(i: int) -> int:
        await anyio.sleep(0)
        if i % 3 == 0:
            raise Boom(i)
        done.append(i)
        return i

    with pytest.raises(Boom) as caught:
        async with TaskGroup(limit=4, cancel_on_error=False) as g:
            for i in range(30):
                g.start_soon(maybe_fail, i)
    assert caught.value is g.errors[0]
    assert sorted(int(str(e)) for e in g.errors) == list(range(0, 30, 3))
    assert sorted(done) == [i for i in range(30) if i % 3]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 4), st.booleans()),  # (delay in ms, fails?)
        min_size=1,
        max_size=12,
    ),
    limit=st.integers(1, 5),
    cancel_on_error=st.booleans(),
)
async def test_raised_error_is_the_first_that_happened(
    plan: list[tuple[int, bool]], limit: int, cancel_on_error: bool
) -> None:
    happened: list[Boom] = []

    async def item(delay_ms: int, fails: bool, tag: int) -> int:
        await anyio.sleep(delay_ms / 1000)
        if fails:
            error = Boom(tag)
            happened.append(error)
            raise error
        return tag

    try:
        async with TaskGroup(limit=limit, cancel_on_error=cancel_on_error) as g:
            handles = [g.start_soon(item, d, f, i) for i, (d, f) in enumerate(plan)]
    except Boom as raised:
        assert happened, "an error was raised although no item failed"
        assert raised is happened[0]
        assert g.errors == happened
    else:
        assert not happened
    if not cancel_on_error:
        assert len(happened) == sum(fails for _d, fails in plan)
    for handle, (_delay, fails) in zip(handles, plan, strict=True):
        assert handle.done()
        if not handle.cancelled():
            assert isinstance(handle.exception(), Boom) == fails


async def test_error_in_the_body_cancels_the_items_and_propagates() -> None:
    with pytest.raises(KeyError):
        async with TaskGroup(limit=2, cancel_on_error=False) as g:
            h = g.start_soon(anyio.sleep, 10)
            await anyio.lowlevel.checkpoint()
            raise KeyError("body")
    assert h.cancelled()
    assert len(g.errors) == 1


async def test_timeout_cancels_everything_and_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0\.05 s"):
        async with TaskGroup(limit=2, timeout=0.05, name="slow") as g:
            handles = [g.start_soon(anyio.sleep, 10) for _ in range(5)]
    assert all(h.cancelled() for h in handles)


async def test_timeout_not_reached_is_silent() -> None:
    async with TaskGroup(limit=2, timeout=5) as g:
        h = g.start_soon(double, 4)
    assert h.result() == 8


async def test_enclosing_cancellation_propagates_cleanly() -> None:
    baseline = live_tasks()
    with anyio.CancelScope() as outer:
        async with TaskGroup(limit=3) as g:
            handles = [g.start_soon(anyio.sleep, 10) for _ in range(10)]
            await anyio.sleep(0.01)
            outer.cancel()
            await anyio.sleep(10)
    assert outer.cancelled_caught
    assert all(h.cancelled() for h in handles)
    assert g.errors == []
    assert live_tasks() == baseline


async def test_enclosing_deadline_with_items_that_never_suspend() -> None:
    count = 0

    async def busy() -> None:
        nonlocal count
        count += 1

    with anyio.move_on_after(0.05) as outer:
        async with TaskGroup(limit=2) as g:
            while True:  # an endless producer that never suspends on its own
                g.start_soon(busy)
                if len(g._buffer) > 1000:
                    await anyio.lowlevel.checkpoint()
    assert outer.cancelled_caught
    assert count > 0


async def test_cancellation_storm_leaves_no_task_and_resolves_every_handle() -> None:
    rng = random.Random(7)
    baseline = live_tasks()
    for _round in range(5):
        with anyio.move_on_after(rng.uniform(0.005, 0.03)):
            async with TaskGroup(limit=rng.randint(1, 8)) as g:
                handles = [g.start_soon(anyio.sleep, rng.uniform(0, 0.01)) for _ in range(200)]
                for _ in range(100):
                    rng.choice(handles).cancel()
                    await anyio.sleep(rng.choice([0, 0, 0.001]))
        assert all(h.done() for h in handles)
        assert g.errors == []
        assert g._stats.inflight == 0
        outcomes = g._stats.success + g._stats.cancelled
        assert outcomes == len(handles)
        assert live_tasks() == baseline


async def test_cancelling_a_running_item_keeps_its_worker_going() -> None:
    async with TaskGroup(limit=1) as g:
        stuck = g.start_soon(anyio.sleep, 10)
        rest = [g.start_soon(double, i) for i in range(5)]
        await anyio.sleep(0.01)
        assert stuck.cancel()
        assert not stuck.cancel()
    assert stuck.cancelled()
    assert [h.result() for h in rest] == [0, 2, 4, 6, 8]
    assert g.errors == []


async def test_cancelled_item_that_finishes_before_noticing() -> None:
    async with TaskGroup(limit=1) as g:
        holder: list[corral.TaskHandle[None]] = []

        async def cancels_itself() -> None:
            holder[0].cancel()  # no checkpoint afterwards: finishes anyway

        holder.append(g.start_soon(cancels_itself))
        after = g.start_soon(double, 3)
    assert holder[0].cancelled()
    assert after.result() == 6


async def test_items_see_the_callers_context_at_start_time() -> None:
    seen: list[str] = []

    async def record() -> None:
        await anyio.sleep(0)
        seen.append(request_id.get())
        request_id.set("changed-by-item")

    async with TaskGroup(limit=2) as g:
        for rid in ("a", "b", "c", "d"):
            request_id.set(rid)
            g.start_soon(record)
    assert sorted(seen) == ["a", "b", "c", "d"]
    assert request_id.get() == "d"


async def test_submit_waits_for_room_and_start_soon_refuses() -> None:
    peak = 0

    async def item() -> None:
        await anyio.sleep(0.001)

    async with TaskGroup(limit=2, max_pending=5) as g:
        for _ in range(40):
            await g.submit(item)
            peak = max(peak, len(g._buffer))
        while len(g._buffer) < 5:
            g.start_soon(item)
        with pytest.raises(QueueFull, match="max_pending=5"):
            g.start_soon(item)
    assert peak <= 5


async def test_submitters_are_released_when_the_group_fails() -> None:
    taken = anyio.Event()

    async def fail() -> None:
        taken.set()
        await anyio.sleep(0.01)
        raise Boom("x")

    results: list[corral.TaskHandle[None]] = []

    async def producer(g: TaskGroup, entered: anyio.Event) -> None:
        entered.set()
        results.append(await g.submit(anyio.sleep, 1))  # blocks: the buffer is full

    async def run_group(producers: anyio.abc.TaskGroup) -> None:
        with pytest.raises(Boom):
            async with TaskGroup(limit=1, max_pending=1) as g:
                g.start_soon(fail)
                await taken.wait()  # the only worker is busy
                g.start_soon(anyio.sleep, 1)  # fills the buffer
                entered = anyio.Event()
                producers.start_soon(producer, g, entered)
                await entered.wait()

    # corral: allow[CRL204] reason="a producer outside the group under test"
    async with anyio.create_task_group() as producers:
        await run_group(producers)
    assert len(results) == 1
    assert results[0].cancelled()


async def test_items_can_start_more_items_while_the_group_exits() -> None:
    async def fan(g: TaskGroup, depth: int) -> int:
        await anyio.sleep(0)
        if depth:
            g.start_soon(fan, g, depth - 1)
            g.start_soon(fan, g, depth - 1)
        return depth

    async with TaskGroup(limit=3) as group:
        group.start_soon(fan, group, 6)
    assert group._stats.success == 2**7 - 1


class Fatal(BaseException):
    """Stands for KeyboardInterrupt/SystemExit, which asyncio re-raises out of the loop."""


async def test_base_exceptions_from_items_are_not_swallowed() -> None:
    async def interrupt() -> None:
        await anyio.lowlevel.checkpoint()
        raise Fatal

    with pytest.raises(Fatal):
        async with TaskGroup(limit=2) as g:
            h = g.start_soon(interrupt)
            other = g.start_soon(anyio.sleep, 10)
    assert isinstance(h.exception(), Fatal)
    assert other.cancelled()


async def test_sync_callables_get_a_type_error_pointing_at_corral_sync() -> None:
    import time

    async with TaskGroup() as g:
        with pytest.raises(TypeError, match=r"time\.sleep is synchronous.*corral\.sync"):
            g.start_soon(time.sleep, 0)
        with pytest.raises(TypeError, match="not callable"):
            g.start_soon(42)  # type: ignore[arg-type]

    def compute() -> int:
        return 1

    with pytest.raises(TypeError, match=r"compute is synchronous.*returned int"):
        async with TaskGroup() as g:
            g.start_soon(compute)  # type: ignore[arg-type]


async def test_usage_errors_are_clear() -> None:
    g = TaskGroup(name="early")
    with pytest.raises(RuntimeError, match="use `async with`"):
        g.start_soon(double, 1)
    async with g:
        pass
    with pytest.raises(RuntimeError, match="cannot be entered twice"):
        async with g:
            pass
    for bad in ({"limit": 0}, {"max_pending": -1}, {"limit": True}, {"timeout": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TaskGroup(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        TaskGroup(name="")
    assert "early" in repr(g)
    assert g.limit is None


async def test_metrics_report_active_groups_inflight_items_and_outcomes() -> None:
    registry = CollectorRegistry()

    def value(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"group": "fetch", **labels})

    release = anyio.Event()

    async def item(i: int) -> int:
        await release.wait()
        if i == 0:
            raise Boom("one failure")
        return i

    with pytest.raises(Boom):
        async with TaskGroup(limit=2, name="fetch", registry=registry, cancel_on_error=False) as g:
            for i in range(6):
                g.start_soon(item, i)
            await anyio.sleep(0.01)
            assert value("corral_groups_active") == 1
            assert value("corral_group_inflight") == 6
            async with TaskGroup(name="fetch", registry=registry):
                assert value("corral_groups_active") == 2
            cancelled = g.start_soon(item, 99)
            cancelled.cancel()
            release.set()
    assert value("corral_groups_active") == 0
    assert value("corral_group_inflight") == 0
    assert value("corral_group_items_total", outcome="success") == 5
    assert value("corral_group_items_total", outcome="error") == 1
    assert value("corral_group_items_total", outcome="cancelled") == 1


async def test_start_soon_after_a_failure_returns_a_cancelled_handle() -> None:
    async def fail() -> None:
        raise Boom("first")

    with pytest.raises(Boom):
        async with TaskGroup(limit=1) as g:
            g.start_soon(fail)
            while not g.errors:
                await anyio.lowlevel.cancel_shielded_checkpoint()
            late = g.start_soon(double, 1)  # no exception in the producer's loop
    assert late.cancelled()


async def test_an_error_is_not_lost_when_an_enclosing_scope_is_cancelled() -> None:
    async def fail() -> None:
        raise Boom("kept")

    with pytest.raises(Boom, match="kept"), anyio.CancelScope() as outer:
        async with TaskGroup(limit=2, cancel_on_error=False) as g:
            g.start_soon(fail)
            g.start_soon(anyio.sleep, 10)
            while not g.errors:
                await anyio.sleep(0)
            outer.cancel()
            await anyio.sleep(10)


async def test_base_exception_in_the_body_propagates_unchanged() -> None:
    with pytest.raises(Fatal):
        async with TaskGroup(limit=1) as g:
            h = g.start_soon(anyio.sleep, 10)
            await anyio.lowlevel.checkpoint()
            raise Fatal
    assert h.cancelled()
    assert g.errors == []


class Later:
    """An awaitable that is not a coroutine."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __await__(self):  # type: ignore[no-untyped-def]
        yield from anyio.sleep(0).__await__()
        return self.value


async def test_callables_may_return_any_awaitable() -> None:
    async with TaskGroup(limit=2) as g:
        h = g.start_soon(lambda: Later(5))
    assert h.result() == 5


async def test_partials_of_builtins_are_rejected_before_running() -> None:
    import functools
    import time

    async with TaskGroup() as g:
        with pytest.raises(TypeError, match=r"partial\(time\.sleep\) is synchronous"):
            g.start_soon(functools.partial(time.sleep, 10))


async def test_items_started_from_one_context_do_not_see_each_others_changes() -> None:
    seen: list[str] = []

    async def change_then_read(i: int) -> None:
        seen.append(request_id.get())
        request_id.set(f"item-{i}")
        await anyio.sleep(0)
        assert request_id.get() == f"item-{i}"

    request_id.set("caller")
    async with TaskGroup(limit=1) as g:  # one worker runs them all, one after another
        for i in range(5):
            g.start_soon(change_then_read, i)
    assert seen == ["caller"] * 5
    assert request_id.get() == "caller"


async def test_a_finished_handle_does_not_keep_its_arguments_alive() -> None:
    import weakref

    class Payload:
        pass

    async def consume(payload: Payload) -> int:
        await anyio.sleep(0)
        return 1

    payload = Payload()
    ref = weakref.ref(payload)
    async with TaskGroup(limit=1) as g:
        handle = g.start_soon(consume, payload)
        del payload
    assert handle.result() == 1
    assert ref() is None
