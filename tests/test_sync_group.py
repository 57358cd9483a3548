"""corral.sync.TaskGroup: bounded threads, first-error semantics, KeyboardInterrupt, no leaks."""

from __future__ import annotations

import contextvars
import itertools
import os
import random
import signal
import threading
import time

import corral
import pytest
from corral import TaskCancelled
from corral.sync import TaskGroup
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Boom(Exception):
    pass


class Peak:
    """Counts items running at once, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(seconds)
        with self.lock:
            self.running -= 1


def test_results_and_the_limit_and_no_thread_left_behind() -> None:
    before = threading.active_count()
    peak = Peak()
    with TaskGroup(limit=4, name="squares") as g:
        handles = [g.start_soon(pow, i, 2) for i in range(50)]
        for _ in range(40):
            g.start_soon(peak, 0.002)
        assert threading.active_count() - before <= 4
    assert [h.result() for h in handles] == [i * i for i in range(50)]
    assert 1 < peak.peak <= 4
    assert threading.active_count() == before
    assert g.errors == []


def test_default_limit_is_thread_pool_executors() -> None:
    assert TaskGroup().limit == min(32, (os.cpu_count() or 1) + 4)


def test_first_error_raised_as_its_own_type_with_all_in_errors() -> None:
    def fail(delay: float, tag: str) -> None:
        time.sleep(delay)
        raise Boom(tag)

    with pytest.raises(Boom) as caught, TaskGroup(limit=3, cancel_on_error=False, name="x") as g:
        g.start_soon(fail, 0.06, "third")
        g.start_soon(fail, 0.0, "first")
        g.start_soon(fail, 0.03, "second")
    assert str(caught.value) == "first"
    assert [str(e) for e in g.errors] == ["first", "second", "third"]
    assert caught.value.__notes__[1:] == ["  Boom: second", "  Boom: third"]


def test_cancel_on_error_drops_pending_items_and_running_ones_finish() -> None:
    before = threading.active_count()
    started = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        started.set()
        time.sleep(0.05)
        finished.append("slow")
        return "slow"

    def fail() -> None:
        started.wait()
        raise Boom("stop")

    with pytest.raises(Boom), TaskGroup(limit=2) as g:
        running = g.start_soon(slow)
        g.start_soon(fail)
        pending = [g.start_soon(slow) for _ in range(10)]
    assert running.result() == "slow"
    assert finished == ["slow"]
    assert all(h.cancelled() for h in pending)
    with pytest.raises(TaskCancelled, match="an item failed with Boom"):
        pending[0].result()
    assert threading.active_count() == before
    with pytest.raises(RuntimeError, match="is closed"):
        g.start_soon(slow)


# Two threads that fail within this many seconds may be recorded in either order: the
# worker records an error a few bytecodes after the item raised it, and a thread switch
# can fall in between. Failures further apart must be recorded in the order they happened.
_SAME_MOMENT = 0.002


@settings(max_examples=20, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=10),
    limit=st.integers(1, 4),
    cancel_on_error=st.booleans(),
)
def test_raised_error_is_the_first_that_happened(
    plan: list[tuple[int, bool]], limit: int, cancel_on_error: bool
) -> None:
    lock = threading.Lock()
    happened: dict[int, float] = {}  # id(error) -> when it was raised

    def item(delay_ms: int, fails: bool, tag: int) -> int:
        time.sleep(delay_ms / 1000)
        if fails:
            error = Boom(tag)
            with lock:
                happened[id(error)] = time.perf_counter()
            raise error
        return tag

    try:
        with TaskGroup(limit=limit, cancel_on_error=cancel_on_error) as g:
            for i, (delay, fails) in enumerate(plan):
                g.start_soon(item, delay, fails, i)
    except Boom as raised:
        assert raised is g.errors[0]
        assert set(map(id, g.errors)) == set(happened)
        times = [happened[id(e)] for e in g.errors]
        for earlier, later in itertools.pairwise(times):
            assert later > earlier - _SAME_MOMENT
    else:
        assert not happened
    if not cancel_on_error:
        assert len(happened) == sum(fails for _d, fails in plan)


def test_error_in_the_body_drops_pending_items_and_propagates() -> None:
    gate = threading.Event()
    with pytest.raises(KeyError), TaskGroup(limit=1) as g:
        first = g.start_soon(gate.wait, 5)
        rest = [g.start_soon(time.sleep, 0) for _ in range(5)]
        try:
            raise KeyError("body")
        finally:
            gate.set()
    assert first.result() is True
    assert all(h.cancelled() for h in rest)
    assert isinstance(g.errors[0], KeyError)


def test_keyboard_interrupt_raised_by_the_body_cancels_pending_and_joins() -> None:
    before = threading.active_count()
    gate = threading.Event()
    with pytest.raises(KeyboardInterrupt), TaskGroup(limit=2) as g:
        running = [g.start_soon(gate.wait, 5) for _ in range(2)]
        pending = [g.start_soon(time.sleep, 0) for _ in range(20)]
        gate.set()
        raise KeyboardInterrupt
    assert all(h.done() for h in running + pending)
    assert sum(h.cancelled() for h in pending) >= 18  # at most the 2 freed threads took one
    assert threading.active_count() == before


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_ctrl_c_while_waiting_for_items_cancels_pending_and_joins(default_sigint: None) -> None:
    before = threading.active_count()
    ran: list[int] = []

    def press_ctrl_c(g: TaskGroup) -> None:
        while g._state != "closing":  # the caller is now blocked waiting in __exit__
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while g._abort_reason is None and time.monotonic() < deadline:
            time.sleep(0.001)  # still running when the interrupt lands: it must be joined
        ran.append(1)

    with pytest.raises(KeyboardInterrupt), TaskGroup(limit=1) as g:
        g.start_soon(press_ctrl_c, g)
        pending = [g.start_soon(ran.append, 2) for _ in range(10)]
    assert ran == [1]
    assert all(h.cancelled() for h in pending)
    assert threading.active_count() == before


def test_base_exception_from_an_item_is_re_raised() -> None:
    with pytest.raises(SystemExit), TaskGroup(limit=1) as g:
        h = g.start_soon(exit, 3)
    assert isinstance(h.exception(), SystemExit)


def test_items_see_the_callers_context() -> None:
    seen: list[str] = []
    with TaskGroup(limit=2) as g:
        for rid in ("a", "b", "c"):
            request_id.set(rid)
            g.start_soon(lambda: seen.append(request_id.get()))
    assert sorted(seen) == ["a", "b", "c"]


def test_items_can_start_items_while_the_group_exits() -> None:
    count = 0
    lock = threading.Lock()

    def fan(g: TaskGroup, depth: int) -> None:
        nonlocal count
        with lock:
            count += 1
        if depth:
            g.start_soon(fan, g, depth - 1)
            g.start_soon(fan, g, depth - 1)

    with TaskGroup(limit=3) as group:
        group.start_soon(fan, group, 5)
    assert count == 2**6 - 1


def test_handles_cancel_only_pending_items_and_wait_with_a_timeout() -> None:
    gate = threading.Event()
    with TaskGroup(limit=1) as g:
        blocked = g.start_soon(gate.wait, 5)
        queued = g.start_soon(pow, 2, 3)
        with pytest.raises(TimeoutError, match="still running"):
            blocked.result(timeout=0.01)
        assert queued.cancel()
        assert not blocked.cancel()  # a thread cannot be interrupted
        gate.set()
        assert blocked.result(timeout=5) is True
    assert queued.cancelled()
    assert blocked.exception() is None


def test_async_callables_get_a_type_error_pointing_at_async_apis() -> None:
    async def fetch() -> None:
        pass

    with TaskGroup() as g:
        with pytest.raises(TypeError, match=r"fetch is async.*corral\.TaskGroup"):
            g.start_soon(fetch)
        with pytest.raises(TypeError, match="not callable"):
            g.start_soon(None)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="returned an awaitable"), TaskGroup() as g:
        g.start_soon(lambda: fetch())


def test_sync_handles_cannot_be_awaited() -> None:
    with TaskGroup() as g:
        h = g.start_soon(pow, 2, 2)
    with pytest.raises(TypeError, match=r"handle\.result\(timeout=\.\.\.\)"):
        h.__await__()


def test_metrics_are_the_groups_metrics() -> None:
    registry = CollectorRegistry()
    gate = threading.Event()

    def value(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"group": "sync-fetch", **labels})

    def fail() -> None:
        raise Boom("x")

    group = TaskGroup(limit=2, name="sync-fetch", registry=registry, cancel_on_error=False)
    with pytest.raises(Boom), group as g:
        for _ in range(4):
            g.start_soon(gate.wait, 5)
        g.start_soon(fail)
        assert value("corral_groups_active") == 1
        assert value("corral_group_inflight") == 5
        g.start_soon(pow, 1, 1).cancel()
        gate.set()
    assert value("corral_groups_active") == 0
    assert value("corral_group_items_total", outcome="success") == 4
    assert value("corral_group_items_total", outcome="error") == 1
    assert value("corral_group_items_total", outcome="cancelled") == 1


def test_usage_errors_are_clear() -> None:
    g = TaskGroup(name="early")
    with pytest.raises(RuntimeError, match="use `with`"):
        g.start_soon(pow, 1, 1)
    with g:
        pass
    with pytest.raises(RuntimeError, match="cannot be entered twice"), g:
        pass
    with pytest.raises(ValueError, match="limit"):
        TaskGroup(limit=0)
    assert "early" in repr(g)
    assert isinstance(corral.sync.TaskGroup(limit=1), TaskGroup)


def test_wrapped_async_callables_are_recognised() -> None:
    import functools

    class Notifier:
        async def __call__(self, user: int) -> None:
            pass

    async def notify(user: int) -> None:
        pass

    with TaskGroup() as g:
        for fn in (functools.partial(notify, 1), Notifier()):
            with pytest.raises(TypeError, match="is async"):
                g.start_soon(fn)


def test_cancellation_storm_resolves_every_handle_and_balances_the_books() -> None:
    rng = random.Random(11)
    before = threading.active_count()
    registry = CollectorRegistry()
    with TaskGroup(limit=4, name="storm", registry=registry, cancel_on_error=False) as g:
        handles = [g.start_soon(time.sleep, rng.choice([0, 0, 0.0005])) for _ in range(400)]
        cancelled = sum(rng.choice(handles).cancel() for _ in range(300))
    assert all(h.done() for h in handles)
    assert sum(h.cancelled() for h in handles) == cancelled > 0
    sample = registry.get_sample_value
    labels = {"group": "storm"}
    assert sample("corral_group_inflight", labels) == 0
    assert sample("corral_group_items_total", {**labels, "outcome": "cancelled"}) == cancelled
    assert sample("corral_group_items_total", {**labels, "outcome": "success"}) == 400 - cancelled
    assert threading.active_count() == before
