"""corral.sync.TaskQueue and corral.sync.spawn: the async TaskQueue behind a portal, sync jobs
on governed threads. The queue's event loop runs on asyncio and on trio."""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import corral
import pytest
import sentry_sdk
from corral import CorralError, NoDefaultQueue, QueueClosed, QueueFull, TaskCancelled
from corral.sync import TaskQueue, spawn
from prometheus_client import CollectorRegistry
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Boom(Exception):
    pass


def threads_left(before: set[threading.Thread]) -> list[str]:
    """Threads started since ``before`` that are still alive, except trio's thread cache:
    trio keeps idle worker threads process-wide for reuse (they exit after 10 s idle)."""
    return [
        t.name
        for t in threading.enumerate()
        if t not in before and not t.name.startswith("Trio thread")
    ]


class CapturingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                self.events.append(item.payload.json)


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    transport = CapturingTransport()
    sentry_sdk.init(transport=transport, environment="test")
    try:
        yield transport.events
    finally:
        sentry_sdk.init()  # no DSN: inactive again


def test_spawn_without_a_default_queue_explains_how_to_open_one() -> None:
    with pytest.raises(
        NoDefaultQueue, match=r"corral\.sync\.TaskQueue\(.*default=True\)\.open\(\)"
    ):
        spawn(print, "never")


def test_spawn_runs_on_the_default_queue_with_the_callers_context(backend: str) -> None:
    before = set(threading.enumerate())

    def work(x: int) -> tuple[int, str, bool]:
        on_main = threading.current_thread() is threading.main_thread()
        return 2 * x, request_id.get(), on_main

    with TaskQueue("jobs", workers=2, capacity=10, default=True, backend=backend) as q:
        assert corral.sync.default_queue() is q
        request_id.set("req-7")
        handles = [spawn(work, i) for i in range(5)]
        assert [h.result(timeout=5) for h in handles] == [(2 * i, "req-7", False) for i in range(5)]
    with pytest.raises(NoDefaultQueue):
        spawn(work, 1)
    assert threads_left(before) == []


def test_capacity_and_backpressure(backend: str) -> None:
    gate = threading.Event()
    with TaskQueue("tight", workers=1, capacity=2, backend=backend) as q:
        first = q.submit_nowait(gate.wait, 5)
        while q.stats().busy == 0:  # the worker has taken it: the queue is empty again
            time.sleep(0.001)
        queued = [q.submit_nowait(time.sleep, 0), q.submit_nowait(time.sleep, 0)]
        with pytest.raises(QueueFull, match="shed load"):
            q.submit_nowait(time.sleep, 0)
        with pytest.raises(QueueFull, match=r"after waiting 0\.02s"):
            q.submit(time.sleep, 0, timeout=0.02)
        with corral.sync.TaskGroup(limit=1) as releaser:
            releaser.start_soon(lambda: (time.sleep(0.02), gate.set()))
            later = q.submit(pow, 2, 5, timeout=5)  # blocks until the gate frees room
        assert later.result(timeout=5) == 32
    assert first.result() is True
    assert all(h.result() is None for h in queued)


def test_close_drains_and_a_timeout_cancels_what_is_left(backend: str) -> None:
    done: list[int] = []
    q = TaskQueue("drain", workers=1, capacity=100, backend=backend).open()
    handles = [q.submit_nowait(lambda i=i: done.append(i)) for i in range(20)]
    q.close()
    assert done == list(range(20))
    assert all(h.done() for h in handles)
    q.close()  # twice is fine
    with pytest.raises(QueueClosed, match="is closed"):
        q.submit_nowait(print)

    gate = threading.Event()
    q = TaskQueue("cut", workers=1, capacity=100, backend=backend).open()
    running = q.submit_nowait(gate.wait, 0.2)
    pending = [q.submit_nowait(time.sleep, 0) for _ in range(5)]
    q.close(timeout=0.01)
    assert running.result(timeout=5) is False  # a running thread finishes its call
    assert all(h.cancelled() for h in pending)
    with pytest.raises(TaskCancelled):
        pending[0].result(timeout=1)


def test_an_error_in_the_block_cancels_pending_jobs_and_propagates(backend: str) -> None:
    before = set(threading.enumerate())
    gate = threading.Event()
    with pytest.raises(KeyError), TaskQueue("oops", workers=1, capacity=10, backend=backend) as q:
        q.submit_nowait(gate.wait, 5)
        pending = q.submit_nowait(time.sleep, 0)
        gate.set()
        raise KeyError("body")
    assert pending.done()
    assert threads_left(before) == []


def test_failures_are_counted_and_reported_like_the_async_queue(
    backend: str, sentry_events: list[dict[str, Any]]
) -> None:
    registry = CollectorRegistry()

    def charge(order: int) -> None:
        raise Boom(f"card declined for {order}")

    def sample(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"queue": "billing", **labels})

    with TaskQueue("billing", workers=2, capacity=10, registry=registry, backend=backend) as q:
        h = q.submit_nowait(charge, 7)
        assert isinstance(h.exception(timeout=5), Boom)
        ok = q.submit_nowait(pow, 3, 2)
        assert ok.result(timeout=5) == 9
        assert q.stats().failed == 1
        assert sample("corral_queue_workers") == 2  # gauges: while the queue is open

    task = "charge"  # the task label drops the enclosing functions
    assert sample("corral_tasks_completed_total", task=task, outcome="error") == 1
    assert sample("corral_tasks_submitted_total", task=task) == 1
    assert sample("corral_tasks_completed_total", task="pow", outcome="success") == 1
    [event] = sentry_events
    assert event["tags"]["corral.queue"] == "billing"
    assert event["tags"]["corral.task"] == task
    assert event["exception"]["values"][-1]["type"] == "Boom"


def test_jobs_with_the_same_key_run_in_order_one_at_a_time(backend: str) -> None:
    seen: list[int] = []
    lock = threading.Lock()
    active = 0

    def step(i: int) -> None:
        nonlocal active
        with lock:
            active += 1
            assert active == 1
        time.sleep(0.001)
        seen.append(i)
        with lock:
            active -= 1

    with TaskQueue("keyed", workers=4, capacity=100, backend=backend) as q:
        for i in range(20):
            q.submit_nowait(step, i, key="customer-1")
    assert seen == list(range(20))


def test_cancel_a_queued_job(backend: str) -> None:
    gate = threading.Event()
    with TaskQueue("c", workers=1, capacity=10, backend=backend) as q:
        q.submit_nowait(gate.wait, 5)
        queued = q.submit_nowait(pow, 2, 2)
        assert queued.cancel()
        gate.set()
    assert queued.cancelled()
    assert not queued.cancel()


def test_async_callables_and_misuse_get_clear_errors(backend: str) -> None:
    async def notify() -> None:
        pass

    q = TaskQueue("misuse", workers=1, capacity=10, backend=backend)
    with pytest.raises(QueueClosed, match=r"not open yet: call \.open\(\)"):
        q.submit_nowait(print)
    with q:
        with pytest.raises(TypeError, match=r"notify is async.*corral\.spawn"):
            q.submit_nowait(notify)
        with pytest.raises(TypeError, match="returned an awaitable"):
            q.submit_nowait(lambda: notify()).result(timeout=5)
        with pytest.raises(RuntimeError, match="only once"):
            q.open()
    assert "misuse" in repr(q)


def test_only_one_default_sync_queue() -> None:
    with TaskQueue("first", workers=1, capacity=1, default=True):
        with pytest.raises(CorralError, match="already the default sync queue"):
            TaskQueue("second", workers=1, capacity=1, default=True).open()
        assert corral.sync.default_queue().name == "first"


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_ctrl_c_while_closing_cancels_what_is_left(backend: str, default_sigint: None) -> None:
    before = set(threading.enumerate())
    q = TaskQueue("interrupted", workers=1, capacity=10, backend=backend).open()

    def press_ctrl_c() -> str:
        while q._state != "closing":  # the caller is now blocked in close()
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not q._queue._stopping and time.monotonic() < deadline:
            time.sleep(0.001)  # still running when the hard stop comes: it must finish
        return "finished"

    running = q.submit_nowait(press_ctrl_c)
    pending = [q.submit_nowait(time.sleep, 0) for _ in range(5)]
    with pytest.raises(KeyboardInterrupt):
        q.close()
    assert running.result(timeout=5) == "finished"  # a running thread is never abandoned
    assert all(h.cancelled() for h in pending)
    assert threads_left(before) == []
    assert "closed" in repr(q)


def test_a_queue_that_cannot_start_leaves_no_default_behind() -> None:
    q = TaskQueue("broken", workers=1, capacity=1, default=True, backend="no-such-loop")
    with pytest.raises(LookupError):
        q.open()
    with pytest.raises(NoDefaultQueue):
        spawn(print)


def test_a_queue_left_open_is_drained_at_interpreter_exit(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    script = f"""
import pathlib, time
import corral.sync

queue = corral.sync.TaskQueue("left-open", workers=1, capacity=10).open()
queue.submit_nowait(time.sleep, 0.1)
queue.submit_nowait(pathlib.Path({str(marker)!r}).write_text, "drained")
# no queue.close(): like a thread that is still running when the script ends
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "drained"
