"""A result produced by a store's writer thread and settled on the event loop.

Both store writers (SQLite group commit, Redis pipelines) hand work to one thread and give
each caller one of these to await. The writer never touches it: it posts the outcome to the
loop (``loop_caller``), where ``settle_all`` resolves a whole batch at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Generic, TypeVar

import anyio

from .base import StoreError

__all__ = ["LoopCaller", "Outcome", "Pending", "join_writer", "loop_caller", "post", "settle_all"]

T = TypeVar("T")
Outcome = tuple[Any, BaseException | None]
#: Schedules a callback on the owning event loop, without waiting.
LoopCaller = Callable[[Callable[[], object]], object]

_log = logging.getLogger("corral.store")
_UNSET: Any = object()


def loop_caller() -> tuple[LoopCaller, LoopCaller]:
    """How to schedule a callback on the current event loop: (from another thread, from
    the loop's own thread). asyncio or trio, the two backends anyio runs on."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        run_soon = trio.lowlevel.current_trio_token().run_sync_soon
        return run_soon, run_soon
    return loop.call_soon_threadsafe, loop.call_soon


class Pending(Generic[T]):
    """Await it for the writer's result; its outcome is set on the event loop only."""

    __slots__ = (
        "_callbacks",
        "_done",
        "_error",
        "_event",
        "_event_class",
        "_loop",
        "_result",
        "_waiters",
    )
    _unresolved: ClassVar[str] = "store write not resolved yet"

    def __init__(
        self,
        event_class: type[anyio.Event] = anyio.Event,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # How a caller waits, chosen once per store because it is on every submit's
        # path: on asyncio a bare future per waiter (cancelling one waiter cancels only
        # its own future); elsewhere an anyio Event of the backend's class (anyio.Event()
        # resolves the backend on every call).
        self._loop = loop
        self._event_class = event_class
        self._result: T = _UNSET
        self._error: BaseException | None = None
        self._done = False
        self._event: anyio.Event | None = None
        self._waiters: list[asyncio.Future[None]] | None = None
        self._callbacks: list[Callable[[Any], object]] | None = None

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        """Call ``callback(self)`` on the event loop once the outcome is known."""
        if self._done:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        """The result once resolved; re-raises the writer's error."""
        if not self._done:
            raise StoreError(self._unresolved)
        if self._error is not None:
            raise self._error
        return self._result

    def _release(self) -> None:
        """Drop what the work held once it is done (subclasses)."""

    def _settle(self, result: T, error: BaseException | None) -> None:
        self._result = result
        self._error = error
        self._done = True
        self._release()
        if self._event is not None:
            self._event.set()
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                if not waiter.done():  # a cancelled waiter has left already
                    waiter.set_result(None)
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:  # one faulty callback must not strand the batch
                    _log.exception("callback of a task store write failed")

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            loop = self._loop
            if loop is not None:
                waiter: asyncio.Future[None] = loop.create_future()
                if self._waiters is None:
                    self._waiters = [waiter]
                else:
                    self._waiters.append(waiter)
                yield from waiter.__await__()
            else:
                if self._event is None:
                    self._event = self._event_class()
                yield from self._event.wait().__await__()
        return self.result()


def post(call_soon: LoopCaller | None, callback: Callable[[], object]) -> None:
    """Schedule ``callback`` on the loop; if the loop is gone, nobody is waiting for it."""
    assert call_soon is not None
    with contextlib.suppress(RuntimeError):
        call_soon(callback)


async def join_writer(thread: threading.Thread | None, call_soon: LoopCaller | None) -> None:
    """Wait until the writer thread has exited and every outcome it posted is settled."""
    if thread is None:
        return
    await anyio.to_thread.run_sync(thread.join)  # not cancellable: always drains
    done = anyio.Event()
    post(call_soon, done.set)  # runs after every outcome the thread posted before it
    await done.wait()


def settle_all(batch: list[Any], outcomes: list[Outcome]) -> None:
    """Resolve a batch on the event loop, in submission order."""
    for pending, (result, error) in zip(batch, outcomes, strict=True):
        pending._settle(result, error)
