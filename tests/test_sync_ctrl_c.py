"""Ctrl-C while corral.sync waits in the main thread is never lost.

CPython runs the SIGINT handler wherever the main thread is. These tests put it where it
hurts: inside a finalizer the garbage collector runs in the waiting thread (CPython prints
and drops a KeyboardInterrupt raised there), and between a queue's "closing" mark and its
drain. Both used to lose the press, or leave jobs neither run nor cancelled.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from corral.sync import TaskGroup, TaskQueue, _ctrl_c
from corral.sync import queue as sync_queue


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _interactive_sigint(default_sigint: None) -> None:
    """Every test here presses Ctrl-C."""


class _Garbage:
    """A reference cycle whose finalizer is still running when Ctrl-C lands."""

    def __init__(self, pressed: threading.Event) -> None:
        self.cycle = self
        self.pressed = pressed

    def __del__(self) -> None:
        self.pressed.wait(5)


def _collect_with_a_finalizer_running(pressed: threading.Event) -> None:
    """What any allocation in the waiting thread can start: a collection that runs a
    finalizer there. The press lands while it runs."""
    _Garbage(pressed)
    gc.collect()


def _press_ctrl_c_when(ready: Callable[[], bool], pressed: threading.Event) -> None:
    while not ready():
        time.sleep(0.001)
    time.sleep(0.02)  # the main thread is inside the finalizer (or the slow step) by now
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # let the handler run while it is still in there
    pressed.set()


class _CollectsOnFirstWait(threading.Event):
    """The group's done-event; its first wait begins with a collection."""

    def __init__(self, pressed: threading.Event) -> None:
        super().__init__()
        self.pressed = pressed
        self.collected = False

    def wait(self, timeout: float | None = None) -> bool:
        if not self.collected:
            self.collected = True
            _collect_with_a_finalizer_running(self.pressed)
        return super().wait(timeout)


def test_a_group_raises_ctrl_c_that_landed_in_a_finalizer() -> None:
    pressed = threading.Event()
    ran: list[int] = []

    def press_ctrl_c(g: TaskGroup) -> None:
        _press_ctrl_c_when(lambda: g._state == "closing", pressed)
        deadline = time.monotonic() + 5
        while g._abort_reason is None and time.monotonic() < deadline:
            time.sleep(0.001)
        ran.append(1)

    with pytest.raises(KeyboardInterrupt), TaskGroup(limit=1) as g:
        g._all_done = _CollectsOnFirstWait(pressed)
        g.start_soon(press_ctrl_c, g)
        pending = [g.start_soon(ran.append, 2) for _ in range(10)]
    assert g._all_done.collected
    assert ran == [1]  # raised while the first item still ran: the rest were dropped
    assert all(h.cancelled() for h in pending)


def _slow_uninstall(
    monkeypatch: pytest.MonkeyPatch, step: Callable[[], None]
) -> types.SimpleNamespace:
    """close() takes the default-queue slot back before it drains: make that step slow
    (or collect there), so the press lands between the "closing" mark and the drain."""
    original = sync_queue._uninstall
    seen = types.SimpleNamespace(called=False)

    def uninstall(queue: Any) -> None:
        seen.called = True
        step()
        original(queue)

    monkeypatch.setattr(sync_queue, "_uninstall", uninstall)
    return seen


def _spin(pressed: threading.Event) -> Callable[[], None]:
    def spin() -> None:  # Python bytecode running: the default handler raises right here
        deadline = time.monotonic() + 5
        while not pressed.is_set() and time.monotonic() < deadline:
            pass

    return spin


@pytest.mark.parametrize("where", ["between closing and draining", "in a finalizer"])
def test_ctrl_c_early_in_close_cancels_what_is_left(
    backend: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    pressed = threading.Event()
    step = (
        _spin(pressed)
        if where == "between closing and draining"
        else lambda: _collect_with_a_finalizer_running(pressed)
    )
    seen = _slow_uninstall(monkeypatch, step)
    q = TaskQueue("pressed-early", workers=1, capacity=10, backend=backend).open()

    def running_job() -> str:
        _press_ctrl_c_when(lambda: q._state == "closing", pressed)
        deadline = time.monotonic() + 5
        while not q._queue._stopping and time.monotonic() < deadline:
            time.sleep(0.001)
        return "finished"

    running = q.submit_nowait(running_job)
    pending = [q.submit_nowait(time.sleep, 0) for _ in range(5)]
    with pytest.raises(KeyboardInterrupt):
        q.close()
    assert seen.called
    assert running.result(timeout=5) == "finished"
    assert all(h.cancelled() for h in pending)
    assert "closed" in repr(q)


def test_a_programs_own_sigint_handler_is_left_alone() -> None:
    calls: list[int] = []

    def own(signum: int, frame: types.FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, own)
    try:

        def press() -> None:
            while g._state != "closing":
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 5
            while not calls and time.monotonic() < deadline:
                time.sleep(0.001)

        with TaskGroup(limit=1) as g:
            g.start_soon(press)
        assert calls == [signal.SIGINT]  # the program's handler ran; no KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) is own
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_press_after_the_wait_is_still_raised() -> None:
    with pytest.raises(KeyboardInterrupt), _ctrl_c.CtrlC() as ctrl_c:
        ctrl_c.wait(lambda timeout: True)
        ctrl_c._note(signal.SIGINT, None)  # as the handler does when Ctrl-C lands here
    assert not ctrl_c.pressed


def test_outside_the_main_thread_the_wait_is_a_plain_wait() -> None:
    seen: list[object] = []

    def in_a_thread() -> None:
        with _ctrl_c.CtrlC() as ctrl_c:
            seen.append(signal.getsignal(signal.SIGINT))
            ctrl_c.wait(lambda timeout: seen.append(timeout) or True)

    with TaskGroup(limit=1) as g:  # on one of the group's threads
        g.start_soon(in_a_thread)
    assert seen == [signal.default_int_handler, None]
