"""corral.sync.TaskGroup: the bounded, structured fan-out for sync code, on governed threads.

This module is one of the few places where the runtime starts threads: a group starts at
most ``limit`` of them, only while it has work, and joins every one before its ``with``
block ends, so business code never needs ``threading.Thread`` or an executor for fan-out.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import queue
import threading
import types
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry

from .. import _fanout
from .._group_metrics import ThreadGroupStats, WorkerCounts
from ..errors import TaskCancelled
from ..handles import TaskHandle
from ._ctrl_c import CtrlC
from .handles import SyncTaskHandle

__all__ = ["TaskGroup", "default_limit"]

P = ParamSpec("P")
T = TypeVar("T")

_API = "corral.sync.TaskGroup.start_soon"

_Item = tuple[
    SyncTaskHandle[Any],
    Callable[..., Any],
    tuple[Any, ...],
    "dict[str, Any] | None",
    contextvars.Context,
]

_thread_ids = itertools.count(1)


def default_limit() -> int:
    """The thread count used when ``limit`` is not given: ThreadPoolExecutor's default."""
    return min(32, (os.cpu_count() or 1) + 4)


class TaskGroup:
    """Run sync callables on at most ``limit`` worker threads and wait for all of them.

    ``start_soon`` never blocks; beyond ``limit`` items wait in the group. Leaving the
    ``with`` block waits for every item and raises the first error, as its own type, with
    every error in ``errors`` (the later ones also as notes). With ``cancel_on_error`` (the
    default) the first error, or an error in the block's body, drops the items that have
    not started; items already running finish, because a thread cannot be interrupted.
    ``KeyboardInterrupt`` in the calling thread (Ctrl-C while the block waits, or raised
    by the body) drops the pending items, joins the running ones and propagates (a second
    Ctrl-C while joining stops the wait; the threads then finish on their own). Items run
    in a copy of the caller's context variables. ``limit`` defaults to
    :func:`default_limit` (``min(32, cpu_count + 4)``, as ThreadPoolExecutor). Metrics
    are the async group's, in ``registry`` (default: the global registry).
    """

    def __init__(
        self,
        *,
        limit: int | None = None,
        cancel_on_error: bool = True,
        name: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        checked = _fanout.check_limit(limit, "limit", "corral.sync.TaskGroup")
        self.limit = checked if checked is not None else default_limit()
        self.cancel_on_error = bool(cancel_on_error)
        self.name = _fanout.group_name(name, "unnamed-sync")
        #: Every error raised by an item (or by the block's body), in the order they happened.
        self.errors: list[Exception] = []
        self._lock = threading.Lock()
        self._items: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._outstanding = 0  # accepted and not finished; guarded by _lock
        # Items not yet started. dict.pop is atomic, so whoever pops a handle first (its
        # worker, its canceller, or a failing group) owns it: no lock per item for this.
        self._waiting: dict[SyncTaskHandle[Any], None] = {}
        self._all_done = threading.Event()
        self._state = "new"  # new -> open -> closing -> closed
        self._abort_reason: str | None = None
        self._fatal: BaseException | None = None
        self._stats = ThreadGroupStats(self.name)
        self._registry = registry
        self._cancel_item_ref = self._cancel_item

    def __repr__(self) -> str:
        return (
            f"<corral.sync.TaskGroup {self.name!r} limit={self.limit} {self._state} "
            f"threads={len(self._threads)} errors={len(self.errors)}>"
        )

    # -- public API -------------------------------------------------------------------
    def start_soon(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncTaskHandle[T]:
        """Schedule ``fn(*args, **kwargs)`` on the group's threads; never blocks."""
        _fanout.check_sync_callable(fn, _API)
        name = getattr(fn, "__name__", None) or type(fn).__name__
        handle: SyncTaskHandle[T] = SyncTaskHandle(
            name, self._lock, canceller=self._cancel_item_ref
        )
        with self._lock:
            if self._state not in ("open", "closing"):
                raise RuntimeError(self._not_open_message())
            if self._abort_reason is not None:
                handle._exception = TaskCancelled(self._cancelled_message())
                handle._state = 1
                return handle
            self._outstanding += 1
            self._stats.inflight += 1
            self._waiting[handle] = None
            self._items.put((handle, fn, args, kwargs or None, contextvars.copy_context()))
            if len(self._threads) < self.limit and self._items.qsize() > 0:
                self._start_thread()
        return handle

    # -- context manager --------------------------------------------------------------
    def __enter__(self) -> TaskGroup:
        if self._state != "new":
            raise RuntimeError(f"corral.sync.TaskGroup {self.name!r} cannot be entered twice")
        self._state = "open"
        self._stats.open(self._registry)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                if isinstance(exc, Exception):
                    with self._lock:
                        self.errors.append(exc)
                self._abort(f"the body of the `with` block raised {type(exc).__name__}")
            try:
                self._wait_for_items()
            except BaseException as interrupt:  # KeyboardInterrupt while waiting
                self._abort(f"{type(interrupt).__name__} in the calling thread")
                self._stop_threads()
                raise
            self._stop_threads()
        finally:
            self._state = "closed"
            self._stats.close()
        if exc is not None and not isinstance(exc, Exception):
            return  # KeyboardInterrupt, SystemExit from the body propagate unchanged
        if self._fatal is not None:
            raise self._fatal
        if self.errors:
            first = self.errors[0]
            _fanout.attach_other_errors(first, self.errors, self.name)
            if first is exc:
                return  # the body's own error: let it propagate with its traceback
            raise first

    # -- threads ----------------------------------------------------------------------
    def _start_thread(self) -> None:
        counts = WorkerCounts()
        self._stats.parts.append(counts)
        thread = threading.Thread(
            target=self._work,
            args=(counts,),
            name=f"corral-sync-group-{self.name}-{next(_thread_ids)}",
            daemon=True,  # joined by __exit__; daemon only so a hard exit is never blocked
        )
        self._threads.append(thread)
        thread.start()

    def _work(self, counts: WorkerCounts) -> None:
        get = self._items.get
        claim = self._waiting.pop
        while True:
            item = get()
            if item is None:
                return
            handle, fn, args, kwargs, ctx = item
            if claim(handle, True):  # cancelled while it waited
                continue
            try:
                result = ctx.run(fn, *args, **kwargs) if kwargs else ctx.run(fn, *args)
                if isinstance(result, types.CoroutineType):
                    raise _fanout.returned_awaitable_error(fn, result, _API)
            except Exception as error:
                handle._set_exception(error)
                counts.error += 1
                self._item_failed(error)
            except BaseException as fatal:  # never swallowed: re-raised by __exit__
                handle._set_exception(fatal)
                counts.error += 1
                self._fatal = self._fatal or fatal
                self._abort(f"an item raised {type(fatal).__name__}")
            else:
                if handle._set_result(result):
                    counts.success += 1
                else:
                    counts.cancelled += 1
            self._finished_one()

    def _finished_one(self) -> None:
        with self._lock:
            self._outstanding -= 1
            if self._outstanding == 0 and self._state == "closing":
                self._all_done.set()

    def _item_failed(self, error: Exception) -> None:
        with self._lock:
            self.errors.append(error)
        if self.cancel_on_error:
            self._abort(f"an item failed with {type(error).__name__}")

    def _wait_for_items(self) -> None:
        with CtrlC() as ctrl_c:
            with self._lock:
                self._state = "closing"
                if self._outstanding == 0:
                    return
            ctrl_c.wait(self._all_done.wait)

    def _stop_threads(self) -> None:
        for _thread in self._threads:
            self._items.put(None)
        for thread in self._threads:
            thread.join()

    # -- cancellation -----------------------------------------------------------------
    def _abort(self, reason: str) -> None:
        """Drop every item that has not started; running ones finish."""
        with self._lock:
            if self._abort_reason is None:
                self._abort_reason = reason
            message = self._cancelled_message()
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                return
            if item is None:  # a stop request racing with us: keep it for its thread
                self._items.put(None)
                return
            self._drop(item[0], message)

    def _cancel_item(self, handle: TaskHandle[Any]) -> bool:
        """The handles' canceller: only items that have not started can be cancelled."""
        return self._drop(handle, f"task {handle.name!r} was cancelled")

    def _drop(self, handle: TaskHandle[Any], message: str) -> bool:
        if self._waiting.pop(handle, True):  # type: ignore[call-overload]
            return False  # already started, finished or dropped
        handle._set_exception(TaskCancelled(message))
        with self._lock:
            self._stats.cancelled += 1
            self._stats.inflight -= 1
        self._finished_one()
        return True

    def _cancelled_message(self) -> str:
        reason = self._abort_reason or "the group was cancelled"
        return f"cancelled by corral.sync.TaskGroup {self.name!r}: {reason}"

    def _not_open_message(self) -> str:
        if self._state == "new":
            return f"corral.sync.TaskGroup {self.name!r} is not open: use `with` before start_soon"
        return f"corral.sync.TaskGroup {self.name!r} is closed: no new items can be started"
