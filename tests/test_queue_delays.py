"""Delayed submits on an in-memory TaskQueue: no worker held, counted as accepted work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


def make(**kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {"workers": 1, "capacity": 10, "registry": CollectorRegistry()}
    options.update(kwargs)
    return corral.TaskQueue("delays", **options)  # type: ignore[arg-type]


async def stamp(out: list[tuple[str, float]], label: str) -> str:
    out.append((label, anyio.current_time()))
    return label


async def test_a_delayed_task_waits_without_holding_the_only_worker() -> None:
    out: list[tuple[str, float]] = []
    async with make(workers=1) as q:
        start = anyio.current_time()
        late = q.submit_nowait(stamp, out, "late", delay=0.4)
        now = q.submit_nowait(stamp, out, "now")
        assert await now == "now"
        assert out == [("now", out[0][1])]  # the single worker ran it while "late" waited
        assert out[0][1] - start < 0.35
        assert await late == "late"
    assert [label for label, _ in out] == ["now", "late"]
    assert out[1][1] - start >= 0.4


async def test_not_before_takes_an_aware_datetime_and_orders_by_due_time() -> None:
    out: list[tuple[str, float]] = []
    async with make(workers=2) as q:
        start = anyio.current_time()
        soon = datetime.now(UTC) + timedelta(seconds=0.2)
        q.submit_nowait(stamp, out, "b", not_before=soon + timedelta(seconds=0.2))
        q.submit_nowait(stamp, out, "a", not_before=soon)
        await q.submit(stamp, out, "past", not_before=soon - timedelta(days=1))
    assert [label for label, _ in out] == ["past", "a", "b"]
    assert out[1][1] - start >= 0.15  # wall clock and the loop clock differ by rounding


async def test_delayed_tasks_count_against_capacity_until_they_run() -> None:
    out: list[tuple[str, float]] = []
    async with make(workers=1, capacity=2) as q:
        q.submit_nowait(stamp, out, "a", delay=0.3)
        q.submit_nowait(stamp, out, "b", delay=0.3)
        assert q.stats().depth == 2
        with pytest.raises(corral.QueueFull):
            q.submit_nowait(stamp, out, "c")
        # a waiting submit gets room once the delayed ones ran
        handle = await q.submit(stamp, out, "c", timeout=5)
        assert await handle == "c"
    assert sorted(label for label, _ in out) == ["a", "b", "c"]


async def test_cancelling_a_delayed_task_frees_its_room_and_it_never_runs() -> None:
    out: list[tuple[str, float]] = []
    async with make(workers=1, capacity=1) as q:
        handle = q.submit_nowait(stamp, out, "never", delay=30)
        assert handle.cancel()
        assert q.stats().depth == 0
        with pytest.raises(corral.TaskCancelled):
            await handle
        assert await q.submit_nowait(stamp, out, "now") == "now"
        with anyio.fail_after(5):
            pass  # leaving the block must not wait 30 s for the cancelled task
    assert [label for label, _ in out] == ["now"]


async def test_leaving_the_block_waits_for_delayed_tasks() -> None:
    out: list[tuple[str, float]] = []
    async with make() as q:
        handle = q.submit_nowait(stamp, out, "x", delay=0.2)
    assert handle.done() and handle.result() == "x"


async def test_a_drain_timeout_drops_delayed_tasks_and_reports_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out: list[tuple[str, float]] = []
    q = make()
    async with q:
        handle = q.submit_nowait(stamp, out, "x", delay=30)
        with anyio.fail_after(5):
            await q.aclose(timeout=0.1)
    with pytest.raises(corral.TaskCancelled):
        await handle
    assert out == []
    assert "1 accepted task(s) never ran" in caplog.text


async def test_a_failed_block_cancels_delayed_tasks() -> None:
    out: list[tuple[str, float]] = []
    with pytest.raises(RuntimeError):
        async with make() as q:
            handle = q.submit_nowait(stamp, out, "x", delay=30)
            raise RuntimeError("boom")
    with pytest.raises(corral.TaskCancelled):
        await handle


async def test_bad_delays_are_refused_clearly() -> None:
    out: list[tuple[str, float]] = []
    async with make() as q:
        with pytest.raises(ValueError, match="naive datetime"):
            q.submit_nowait(stamp, out, "x", not_before=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="delay must be a finite number"):
            q.submit_nowait(stamp, out, "x", delay=-1)
        with pytest.raises(ValueError, match="delay must be a finite number"):
            q.submit_nowait(stamp, out, "x", delay=float("nan"))
        with pytest.raises(TypeError, match="not both"):
            q.submit_nowait(stamp, out, "x", delay=1, not_before=datetime.now(UTC))
        with pytest.raises(TypeError, match="not_before must be a datetime"):
            q.submit_nowait(stamp, out, "x", not_before=12.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority= needs a durable queue"):
            q.submit_nowait(stamp, out, "x", priority=5)
        with pytest.raises(ValueError, match="naive datetime"):
            await q.submit(stamp, out, "x", not_before=datetime(2030, 1, 1))
        assert q.stats().depth == 0
    assert out == []


async def test_a_delayed_keyed_task_joins_its_key_when_due() -> None:
    out: list[tuple[str, float]] = []
    async with make(workers=2) as q:
        q.submit_nowait(stamp, out, "later", key="k", delay=0.2)
        q.submit_nowait(stamp, out, "first", key="k")
    assert [label for label, _ in out] == ["first", "later"]
