"""Queue handles behave like every TaskHandle: inspection before and after completion."""

from __future__ import annotations

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


async def test_handle_inspection_through_its_life() -> None:
    gate = anyio.Event()

    async def wait_then(value: int) -> int:
        await gate.wait()
        return value

    async def boom() -> None:
        await gate.wait()
        raise LookupError("missing")

    async with corral.TaskQueue("h", workers=2, capacity=5, registry=CollectorRegistry()) as q:
        ok = q.submit_nowait(wait_then, 4)
        bad = q.submit_nowait(boom)
        assert not ok.done() and "pending" in repr(ok)
        with pytest.raises(corral.TaskNotDone, match="has not finished"):
            ok.result()
        with pytest.raises(corral.TaskNotDone):
            ok.exception()
        gate.set()
        assert await ok == 4
        with pytest.raises(LookupError):
            await bad
    assert "done" in repr(ok) and ok.exception() is None and not ok.cancelled()
    assert "failed(LookupError)" in repr(bad)
    assert ok.cancel() is False  # finished tasks cannot be cancelled
    seen: list[int] = []
    ok.add_done_callback(lambda h: seen.append(h.result()))  # runs at once when done
    assert seen == [4]


async def test_a_standalone_handle_cancels_itself_and_keeps_a_given_id() -> None:
    handle: corral.TaskHandle[int] = corral.TaskHandle("solo", task_id="t-1")
    assert handle.id == "t-1"
    handle.id = "t-2"
    assert handle.id == "t-2"
    assert handle.cancel() is True
    assert handle.cancelled() and "cancelled" in repr(handle)
    with pytest.raises(corral.TaskCancelled):
        await handle
    assert corral.TaskHandle("other").id != corral.TaskHandle("another").id
