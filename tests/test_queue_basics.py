"""TaskQueue basics: submit, results, errors on the handle, backpressure, closed queues."""

from __future__ import annotations

import contextvars

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

request_id = contextvars.ContextVar("request_id", default="-")


async def add(a: int, b: int) -> int:
    await anyio.sleep(0)
    return a + b


async def fail(message: str) -> None:
    raise ValueError(message)


async def read_request_id() -> str:
    await anyio.sleep(0)
    return request_id.get()


def make(**kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {"workers": 4, "capacity": 100, "registry": CollectorRegistry()}
    options.update(kwargs)
    return corral.TaskQueue("q", **options)  # type: ignore[arg-type]


async def test_results_and_errors_land_on_handles() -> None:
    async with make(on_error=[lambda _info, _exc: None]) as q:
        ok = q.submit_nowait(add, 1, 2)
        bad = q.submit_nowait(fail, "boom")
        assert await ok == 3
        with pytest.raises(ValueError, match="boom"):
            await bad
        assert ok.result() == 3 and ok.name == "add" and ok.id
        assert isinstance(bad.exception(), ValueError)
        after = q.submit_nowait(add, 2, 2)  # the worker survived the crash
        assert await after == 4


async def test_submitter_context_is_copied_into_the_task() -> None:
    async with make() as q:
        request_id.set("req-7")
        handle = q.submit_nowait(read_request_id)
        request_id.set("req-8")  # later changes do not leak into the already-submitted task
        assert await handle == "req-7"


async def test_queue_full_names_queue_depth_and_capacity() -> None:
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=2) as q:
        first = q.submit_nowait(wait)
        await anyio.sleep(0.01)  # let the worker take it; it does not count as queued
        q.submit_nowait(wait)
        q.submit_nowait(wait)
        with pytest.raises(corral.QueueFull, match=r"'q' is full: depth 2, capacity 2"):
            q.submit_nowait(wait)
        gate.set()
        await first
    assert q.stats().rejected == 1


async def test_submit_to_closed_or_unopened_queue_raises_queue_closed() -> None:
    q = make()
    with pytest.raises(corral.QueueClosed, match="not open"):
        q.submit_nowait(add, 1, 1)
    async with q:
        pass
    with pytest.raises(corral.QueueClosed, match="closed"):
        q.submit_nowait(add, 1, 1)
    with pytest.raises(corral.QueueClosed):
        await q.submit(add, 1, 1)


async def test_sync_callable_is_rejected_with_a_pointer_to_corral_sync() -> None:
    def blocking() -> None:
        pass

    async with make() as q:
        with pytest.raises(TypeError, match=r"blocking is not an async function.*corral\.sync"):
            q.submit_nowait(blocking)  # type: ignore[arg-type]
