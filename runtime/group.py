"""corral.TaskGroup: structured fan-out with a limit, for async code.

The limit is a pool of at most ``limit`` worker tasks pulling items from one buffer, so
100,000 items cost ``limit`` tasks, not 100,000 tasks throttled by a semaphore. A worker
is started only when there is work and no idle worker can take it, and it exits when the
buffer is empty; the per-item path is a few attribute writes (no task, no cancel scope,
no lock per item), which is what makes the group faster than asyncio.TaskGroup with a
Semaphore.

Errors follow one rule: the group raises the first error that happened, as its own
type; every error is in ``group.errors`` and the later ones are attached as notes.
"""

from __future__ import annotations

import contextvars
import math
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry

from . import _fanout, _identity
from ._group_metrics import GroupStats
from ._stepper import FINISHED, SLICE, Entry, call, checkpoint, resume
from .errors import QueueFull, TaskCancelled
from .handles import TaskHandle
from .task_info import TaskInfo

__all__ = ["TaskGroup"]

P = ParamSpec("P")
T = TypeVar("T")

_API = "corral.TaskGroup.start_soon"

_NO_CONTEXT = contextvars.Context()
_new_item = object.__new__


def _spent(*_args: Any, **_kwargs: Any) -> None:
    """What a handle holds instead of its function once the item has run."""


class _Item(Entry):
    """A buffered item and its handle in one object (:class:`corral._stepper.Entry`):
    one allocation per item, and one object the garbage collector has to look at while
    100,000 of them wait."""

    __slots__ = ()

    def release(self) -> None:
        """Drop the references to the call: the handle outlives the item."""
        self.fn = _spent
        self.args = ()
        self.kwargs = None
        self.ctx = _NO_CONTEXT

    def not_awaitable(self, value: object) -> TypeError:
        return _fanout.not_awaitable_error(self.fn, value, _API)


class _Worker:
    """One pool member; ``scope`` lets a single running item be cancelled without a
    cancel scope per item (the worker's scope is cancelled and the worker restarts)."""

    __slots__ = ("current", "interrupted", "scope")

    def __init__(self) -> None:
        self.current: _Item | None = None
        self.interrupted = False
        self.scope: anyio.CancelScope | None = None


class TaskGroup:
    """Run async callables concurrently, at most ``limit`` at a time, and wait for all.

    ``start_soon`` never blocks: beyond ``limit`` items wait in the group's buffer.
    ``await submit(...)`` waits while ``max_pending`` items are buffered (backpressure for
    producers of unbounded work); ``start_soon`` raises :class:`corral.QueueFull` instead.
    Leaving the block waits for every item and then raises the first error, as its own
    type (not an ExceptionGroup); ``errors`` holds all of them in the order they
    happened. With ``cancel_on_error`` (the default) the first error, or an error in the
    block's body, drops the buffered items and cancels the running ones and the body;
    without it every item still runs. ``timeout`` (seconds from entering the block)
    cancels everything and raises ``TimeoutError``. Cancellation of an enclosing scope
    cancels everything and propagates as-is. Items run in a copy of the caller's context
    variables, taken when they are started. ``limit=None`` means no limit: one worker per
    waiting item, like ``asyncio.TaskGroup`` (a default limit could deadlock items that
    wait for each other). ``registry`` is the Prometheus registry of the group's metrics
    (``corral_groups_active``, ``corral_group_inflight``, ``corral_group_items_total``,
    labelled by ``name``, a fixed label such as "fetch-avatars", not a per-call value;
    unnamed groups share "unnamed"; default registry: the global one).
    """

    def __init__(
        self,
        *,
        limit: int | None = None,
        cancel_on_error: bool = True,
        name: str | None = None,
        timeout: float | None = None,
        max_pending: int | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._limit = _fanout.check_limit(limit, "limit", "corral.TaskGroup")
        self._max_pending = _fanout.check_limit(max_pending, "max_pending", "corral.TaskGroup")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or math.isnan(timeout)
            or timeout <= 0
        ):
            raise ValueError(
                "corral.TaskGroup(timeout=...) must be a positive number of seconds, "
                f"got {timeout!r}"
            )
        self.name = _fanout.group_name(name, "unnamed")
        self.cancel_on_error = bool(cancel_on_error)
        self.timeout = timeout
        #: Every error raised by an item (or by the block's body), in the order they happened.
        self.errors: list[Exception] = []
        self._buffer: deque[_Item] = deque()
        self._workers: set[_Worker] = set()
        self._nworkers = 0
        self._max_workers = self._limit if self._limit is not None else math.inf
        self._tg: anyio.abc.TaskGroup | None = None
        self._state = "new"  # new -> open -> closed
        self._abort_reason: str | None = None
        self._room: anyio.Event | None = None
        self._stats = GroupStats(self.name)
        self._registry = registry
        self._cancel_item_ref = self._cancel_item
        self._last_fn: object = None
        self._last_fn_name = ""

    def __repr__(self) -> str:
        return (
            f"<corral.TaskGroup {self.name!r} limit={self._limit} {self._state} "
            f"inflight={self._stats.inflight} errors={len(self.errors)}>"
        )

    # -- public API -------------------------------------------------------------------
    @property
    def limit(self) -> int | None:
        return self._limit

    def start_soon(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]:
        """Schedule ``fn(*args, **kwargs)`` in the group and return its handle; never blocks."""
        if self._state != "open":
            raise RuntimeError(self._not_open_message())
        if fn is not self._last_fn:
            _fanout.check_async_callable(fn, _API)
            self._last_fn = fn
            self._last_fn_name = getattr(fn, "__name__", None) or type(fn).__name__
        if self._abort_reason is not None:
            item = _Item(self._last_fn_name, canceller=self._cancel_item_ref)
            item._set_exception(TaskCancelled(self._cancelled_message()))
            return item
        buffer = self._buffer
        if self._max_pending is not None and len(buffer) >= self._max_pending:
            raise QueueFull(
                f"corral.TaskGroup {self.name!r} already holds max_pending={self._max_pending} "
                "waiting items; use `await group.submit(...)` to wait for room"
            )
        # The handle's fields are written here rather than through TaskHandle.__init__
        # (as TaskQueue._enqueue does): the constructor call costs more than the writes.
        item = _new_item(_Item)
        item._id = None
        item.name = self._last_fn_name
        item._state = 0
        item._result = None
        item._exception = None
        item._callbacks = None
        item._canceller = self._cancel_item_ref
        item.fn = fn
        item.args = args
        item.kwargs = kwargs or None
        # The item's own snapshot of the caller's context: never shared, never compared.
        item.ctx = contextvars.copy_context()
        item.info = None
        buffer.append(item)
        self._stats.inflight += 1
        if self._nworkers < self._max_workers:
            self._nworkers += 1
            self._tg.start_soon(self._run_worker)  # type: ignore[union-attr]
        return item

    async def submit(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]:
        """Like ``start_soon``, but waits while ``max_pending`` items are buffered."""
        limit = self._max_pending
        if limit is not None:
            while len(self._buffer) >= limit and self._state == "open" and not self._abort_reason:
                if self._room is None:
                    self._room = anyio.Event()
                await self._room.wait()
            if self._abort_reason is not None:  # failed (maybe closed) while we waited
                handle: TaskHandle[T] = TaskHandle(getattr(fn, "__name__", "task"))
                handle._set_exception(TaskCancelled(self._cancelled_message()))
                return handle
        return self.start_soon(fn, *args, **kwargs)

    # -- context manager --------------------------------------------------------------
    async def __aenter__(self) -> TaskGroup:
        if self._state != "new":
            raise RuntimeError(f"corral.TaskGroup {self.name!r} cannot be entered twice")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        if self.timeout is not None:
            tg.cancel_scope.deadline = anyio.current_time() + self.timeout
        self._tg = tg
        self._state = "open"
        self._stats.open(self._registry)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        tg = self._tg
        assert tg is not None
        cancelled_exc = anyio.get_cancelled_exc_class()
        body_error: BaseException | None = None
        host_cancelled = isinstance(exc, cancelled_exc)
        if exc is not None and not host_cancelled:
            # The body failed: like asyncio.TaskGroup, nothing started by it goes on.
            body_error = exc
            if isinstance(exc, Exception):
                self.errors.append(exc)
            self._abort("the body of the `async with` block raised")
            exc_type = exc = tb = None
        try:
            try:
                suppressed = bool(await tg.__aexit__(exc_type, exc, tb))
            except BaseException as raised:
                self._drop_buffer()
                fatal = _first_fatal(raised, cancelled_exc)
                if fatal is not None:
                    raise fatal from None
                if self.errors:
                    raise self._first_error() from None
                raise
            self._drop_buffer()
            if body_error is not None and not isinstance(body_error, Exception):
                raise body_error
            if self.errors:
                raise self._first_error() from None
            if (
                self._abort_reason is None
                and tg.cancel_scope.cancel_called
                and (host_cancelled or self._stats.interrupted)
            ):
                raise TimeoutError(
                    f"corral.TaskGroup {self.name!r} timed out after {self.timeout} s; "
                    f"{self._stats.interrupted} item(s) were cancelled"
                ) from None
            return suppressed
        finally:
            self._state = "closed"
            self._stats.close()
            if self._room is not None:
                self._room.set()

    # -- workers ----------------------------------------------------------------------
    async def _run_worker(self) -> None:
        worker = _Worker()
        self._workers.add(worker)
        identity = _identity.register(lambda: self._running_info(worker))
        try:
            while True:
                with anyio.CancelScope() as scope:
                    worker.scope = scope
                    await self._drain(worker)
                # Only a cancelled item (handle.cancel()) brings us here with work left.
                if not (worker.interrupted and self._buffer and self._abort_reason is None):
                    return
                worker.interrupted = False
        finally:
            _identity.unregister(identity)
            self._workers.discard(worker)
            self._nworkers -= 1

    def _running_info(self, worker: _Worker) -> TaskInfo | None:
        handle = worker.current
        if handle is None:
            return None
        info = handle.info
        if info is None:
            info = handle.info = TaskInfo(self.name, handle.name, handle, (), {}, None)
        return info

    async def _drain(self, worker: _Worker) -> None:
        """Run buffered items back to back, stepped by :mod:`corral._stepper`."""
        buffer = self._buffer
        popleft = buffer.popleft
        stats = self._stats
        perf = time.perf_counter
        finished = FINISHED
        slice_ = SLICE
        turn = perf()  # when this worker last gave the event loop back
        while buffer:
            handle = popleft()
            if self._room is not None:
                self._wake_submitters()
            if handle._state:  # cancelled while it waited
                handle.release()
                continue
            ctx = handle.ctx  # the item's own snapshot, taken by start_soon
            worker.current = handle
            try:
                step = call(handle)
                yielded = ctx.run(next, step, finished)
                if yielded is not finished:  # the item awaits something
                    await resume(ctx, step, yielded)
                    turn = perf()
            except Exception as error:
                worker.current = None
                handle.release()
                stats.inflight -= 1
                self._item_failed(handle, error)
            except BaseException as interrupt:
                worker.current = None
                handle.release()
                stats.inflight -= 1
                self._item_interrupted(handle, interrupt)
                raise
            else:
                worker.current = None
                handle.fn = _spent  # handle.release(), inlined: the handle outlives the item
                handle.args = ()
                handle.kwargs = None
                handle.ctx = _NO_CONTEXT
                stats.inflight -= 1
                if handle._state:  # cancelled by its handle but finished before noticing
                    handle._result = None
                    stats.cancelled += 1
                else:  # handle._finish(), inlined: most handles have no callbacks
                    if handle._callbacks is None:
                        handle._state = 1
                    else:
                        handle._finish()
                    stats.success += 1
            if worker.interrupted:
                return
            if perf() - turn >= slice_:  # fairness: give the loop back (see _stepper)
                await checkpoint()
                turn = perf()

    def _item_failed(self, handle: TaskHandle[Any], error: Exception) -> None:
        handle._set_exception(error)
        self._stats.error += 1
        self.errors.append(error)
        if self.cancel_on_error and self._abort_reason is None:
            self._abort(f"an item failed with {type(error).__name__}")

    def _item_interrupted(self, handle: TaskHandle[Any], interrupt: BaseException) -> None:
        if isinstance(interrupt, anyio.get_cancelled_exc_class()):
            if handle._set_exception(TaskCancelled(self._cancelled_message())):
                self._stats.interrupted += 1
            self._stats.cancelled += 1
        else:  # KeyboardInterrupt, SystemExit: recorded, never swallowed
            handle._set_exception(interrupt)
            self._stats.error += 1

    # -- cancellation -----------------------------------------------------------------
    def _abort(self, reason: str) -> None:
        self._abort_reason = reason
        self._drop_buffer()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        self._wake_submitters()

    def _drop_buffer(self) -> None:
        buffer = self._buffer
        if not buffer:
            return
        message = self._cancelled_message()
        stats = self._stats
        while buffer:
            handle = buffer.popleft()
            handle.release()
            if handle._set_exception(TaskCancelled(message)):
                stats.inflight -= 1
                stats.cancelled += 1
                stats.interrupted += 1

    def _cancel_item(self, handle: TaskHandle[Any]) -> bool:
        """The handles' canceller (only called for pending handles): drop a waiting item,
        or interrupt the worker running it."""
        handle._set_exception(TaskCancelled(f"task {handle.name!r} was cancelled"))
        for worker in self._workers:
            if worker.current is handle:
                worker.interrupted = True
                assert worker.scope is not None
                worker.scope.cancel()
                return True
        self._stats.inflight -= 1  # still buffered: its worker will skip it
        self._stats.cancelled += 1
        return True

    def _wake_submitters(self) -> None:
        room = self._room
        if room is not None and (
            self._max_pending is None
            or len(self._buffer) < self._max_pending
            or self._abort_reason is not None
        ):
            self._room = None
            room.set()

    # -- reporting --------------------------------------------------------------------
    def _first_error(self) -> Exception:
        first = self.errors[0]
        _fanout.attach_other_errors(first, self.errors, self.name)
        return first

    def _cancelled_message(self) -> str:
        reason = self._abort_reason or "the group was cancelled"
        return f"cancelled by corral.TaskGroup {self.name!r}: {reason}"

    def _not_open_message(self) -> str:
        if self._state == "new":
            return f"corral.TaskGroup {self.name!r} is not open: use `async with` before start_soon"
        return f"corral.TaskGroup {self.name!r} is closed: no new items can be started"


def _first_fatal(raised: BaseException, cancelled_exc: type[BaseException]) -> BaseException | None:
    """From what the task group raised, the first exception that must not be swallowed."""
    leaves = getattr(raised, "exceptions", None)  # a BaseExceptionGroup (3.10: backport)
    if isinstance(leaves, tuple):
        for leaf in leaves:
            found = _first_fatal(leaf, cancelled_exc)
            if found is not None:
                return found
        return None
    if isinstance(raised, cancelled_exc):
        return None
    return raised
