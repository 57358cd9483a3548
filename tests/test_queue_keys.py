"""Per-key ordering, key state freed when idle, and bounded memory under overload."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import corral
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


def make(**kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {"workers": 4, "capacity": 1000, "registry": CollectorRegistry()}
    options.update(kwargs)
    return corral.TaskQueue("keys", **options)  # type: ignore[arg-type]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3)),  # (key, delay in sleep(0) steps)
        min_size=1,
        max_size=40,
    ),
    workers=st.integers(1, 4),
)
async def test_same_key_runs_one_at_a_time_in_submission_order(
    plan: list[tuple[int, int]], workers: int
) -> None:
    events: list[tuple[str, int, int]] = []
    running: dict[int, int] = {}

    async def step(key: int, seq: int, delay: int) -> None:
        running[key] = running.get(key, 0) + 1
        assert running[key] == 1, f"two tasks of key {key} overlap"
        events.append(("start", key, seq))
        for _ in range(delay):
            await anyio.sleep(0)
        running[key] -= 1

    async with make(workers=workers) as q:
        for seq, (key, delay) in enumerate(plan):
            q.submit_nowait(step, key, seq, delay, key=key)
    for key in {k for k, _ in plan}:
        started = [seq for kind, k, seq in events if k == key]
        expected = [seq for seq, (k, _) in enumerate(plan) if k == key]
        assert started == expected
    assert q._keys == {}


async def test_different_keys_run_in_parallel() -> None:
    both_running = anyio.Event()
    arrived: list[str] = []

    async def meet(name: str) -> None:
        arrived.append(name)
        if len(arrived) == 2:
            both_running.set()
        with anyio.fail_after(5):
            await both_running.wait()

    async with make(workers=2) as q:
        a = q.submit_nowait(meet, "a", key="a")
        b = q.submit_nowait(meet, "b", key="b")
        await a
        await b


async def test_cancelling_a_parked_task_keeps_the_rest_of_its_line() -> None:
    gate = anyio.Event()
    order: list[int] = []

    async def first() -> None:
        await gate.wait()
        order.append(0)

    async def later(i: int) -> None:
        order.append(i)

    async with make(workers=2) as q:
        head = q.submit_nowait(first, key="k")
        handles = [q.submit_nowait(later, i, key="k") for i in (1, 2, 3)]
        await anyio.wait_all_tasks_blocked()
        handles[0].cancel()  # parked behind "k"
        gate.set()
        await head
        await handles[2]
    assert order == [0, 2, 3]
    assert q._keys == {}


async def test_a_million_distinct_keys_leave_no_key_state_behind() -> None:
    async def noop() -> None:
        pass

    async with make(workers=16, capacity=4096) as q:
        submit = q.submit
        for key in range(1_000_000):
            await submit(noop, key=key)
    assert q._keys == {}
    assert q.stats().completed == 1_000_000


async def test_key_state_memory_stays_bounded() -> None:
    async def noop() -> None:
        pass

    async with make(workers=16, capacity=1024) as q:
        submit = q.submit
        for key in range(5_000):  # warm up caches and free lists
            await submit(noop, key=("warm", key))
        await q.aclose()
    gc.collect()
    tracemalloc.start()
    try:
        async with make(workers=16, capacity=1024) as q:
            baseline = tracemalloc.get_traced_memory()[0]
            submit = q.submit
            for key in range(50_000):
                await submit(noop, key=("user", key))
            while q.stats().depth or q.stats().busy:
                await anyio.sleep(0.001)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert q._keys == {}
    # 50k keys that each kept state would cost megabytes; idle keys must cost nothing.
    assert grown < 1_000_000, f"memory grew by {grown} bytes"


async def test_overload_is_rejected_with_bounded_memory() -> None:
    gate = anyio.Event()

    async def slow() -> None:
        await gate.wait()

    capacity = 500
    async with make(workers=4, capacity=capacity) as q:
        tracemalloc.start()
        try:
            accepted = rejected = 0
            for _ in range(10 * capacity):  # 10x what the queue can hold
                try:
                    q.submit_nowait(slow)
                    accepted += 1
                except corral.QueueFull:
                    rejected += 1
            assert q.stats().depth <= capacity
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        gate.set()
    assert accepted == capacity  # no checkpoint in the loop: the workers never got a turn
    assert rejected == 10 * capacity - accepted
    assert q.stats().rejected == rejected
    assert peak < 2_000_000, f"peak {peak} bytes while overloaded"


async def test_unhashable_key_is_refused_at_submit() -> None:
    async def noop() -> None:
        pass

    async with make() as q:
        with pytest.raises(TypeError, match=r"key must be hashable.*got list"):
            q.submit_nowait(noop, key=["not", "hashable"])
        with pytest.raises(TypeError, match="key must be hashable"):
            await q.submit(noop, key={"a": 1})
        await q.submit_nowait(noop, key=("tenant", 1))  # the workers are unaffected
    assert q.stats().submitted == 1
