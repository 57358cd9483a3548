"""TaskQueue: bounded, observable, crash-proof background work; what replaces create_task.

Design, driven by where per-task time goes (DESIGN.md, "Measured facts"):

- ``workers`` long-lived tasks read one bounded anyio memory stream, using the
  ``send_nowait``/``receive_nowait`` fast paths and awaiting only when the stream is
  empty. There is no task and no cancel scope per submission.
- The handle *is* the queue entry (a ``TaskHandle`` subclass), so a submission allocates
  one object plus a copied context.
- Counters are plain integers and histograms plain bucket arrays on a per-task-name
  tally; gauges (depth, busy workers) are read when Prometheus scrapes.
- Each worker owns one cancel scope that lives across many tasks; ``handle.cancel()`` on
  a running task cancels that scope and the worker opens a fresh one, so only
  cancelled tasks pay for a scope.
- Per-key ordering: a key maps to ``None`` while one of its tasks runs, or to a deque of
  tasks parked behind it; the worker that finishes a keyed task runs the next parked one
  itself, and the key's entry is deleted when nothing is parked, so idle keys cost no
  memory. Parked tasks count towards ``capacity``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Sequence
from contextvars import Context, copy_context
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import _default
from ._context import as_coroutine, step_in_context
from .durable import DurableRunner, durable_runner
from .errors import QueueClosed, QueueFull, TaskCancelled
from .handles import TaskHandle
from .metrics import Buckets, collector_for, histogram_family
from .middleware import Middleware, run_chain
from .observers import bind_hooks, call_hooks
from .sentry import report_exception, sentry_active
from .store.base import Store
from .task_info import TaskInfo

__all__ = ["ErrorHook", "QueueStats", "TaskQueue"]

T = TypeVar("T")

_log = logging.getLogger("corral.queue")

ErrorHook = Callable[[TaskInfo, Exception], "Awaitable[object] | object"]

_NEW, _OPEN, _CLOSING, _CLOSED = 0, 1, 2, 3
_KIND_CACHE_LIMIT = 4096
_CoroutineType = types.CoroutineType


@dataclass(frozen=True)
class QueueStats:
    """A snapshot of a queue's state and totals, for services without Prometheus."""

    name: str
    depth: int  # accepted, not yet started (includes tasks parked behind their key)
    capacity: int
    workers: int
    busy: int  # workers running a task right now
    submitted: int
    rejected: int
    completed: int  # finished successfully
    failed: int  # raised an exception
    cancelled: int


class _Tally:
    """Counters and histograms of one task name in one queue (plain ints, no locks)."""

    __slots__ = (
        "cancelled",
        "duration",
        "error",
        "name",
        "rejected",
        "retries",
        "submitted",
        "success",
        "wait",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.submitted = 0
        self.rejected = 0
        self.success = 0
        self.error = 0
        self.cancelled = 0
        self.retries = 0
        self.duration = Buckets()
        self.wait = Buckets()

    def add_retry(self) -> None:
        self.retries += 1


class _Worker:
    __slots__ = ("job", "scope")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.scope: anyio.CancelScope | None = None


class _Job(TaskHandle[Any]):
    """A queued task and its handle in one object (one allocation per submission)."""

    __slots__ = ("args", "ctx", "fn", "info", "key", "kwargs", "t_submit", "tally", "worker")

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    key: Hashable | None
    ctx: Context
    tally: _Tally
    worker: _Worker | None
    info: TaskInfo | None
    t_submit: float


def _task_name(fn: Callable[..., Any]) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    return type(fn).__qualname__


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)


class TaskQueue:
    """A bounded pool of ``workers`` tasks running submitted async functions.

    Use it as an async context manager. ``submit_nowait`` raises :class:`corral.QueueFull`
    when ``capacity`` tasks are waiting (the backpressure signal: shed load) and
    ``await submit(..., timeout=)`` waits for room. Tasks with the same ``key`` run one
    at a time in submission order. A task's exception never stops a worker: it lands on
    the handle, runs the ``on_error`` hooks, counts in the metrics and goes to Sentry
    when ``sentry_sdk`` is initialised (otherwise, without hooks, it is logged at ERROR
    on ``corral.queue``). The submitter's contextvars are copied into the task; the
    submitter's cancellation is not (background work outlives the request), the queue's
    shutdown is.

    Leaving the block normally drains (queued and running tasks finish); leaving it with
    an exception, or ``aclose(timeout=)`` running out, cancels what is left, and every
    unfinished handle resolves with :class:`corral.TaskCancelled`.

    Parameters: ``middleware`` wraps each task (outermost first, see
    :mod:`corral.middleware`); ``on_error`` hooks get ``(TaskInfo, exception)`` and may be
    async; ``observers`` see lifecycle events (:class:`corral.Observer`); ``registry`` is
    the Prometheus registry (default: the global one); ``default=True`` makes this the
    queue behind :func:`corral.spawn` while it is open. ``store`` (a
    :class:`corral.SQLiteStore`, or any :class:`corral.store.Store`) makes the queue
    durable: see :mod:`corral.durable` and README "Durable tasks"; ``idempotency_key=``
    is then accepted by ``submit`` and ``submit_nowait``.

    The queue may run in any thread's event loop (``corral.sync`` runs it behind a
    blocking portal); all its methods must be called from that loop, and handle
    callbacks fire there.
    """

    def __init__(
        self,
        name: str,
        *,
        workers: int,
        capacity: int,
        middleware: Sequence[Middleware] = (),
        on_error: Sequence[ErrorHook] = (),
        observers: Sequence[object] = (),
        registry: CollectorRegistry | None = None,
        default: bool = False,
        store: Store | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"TaskQueue name must be a non-empty string, got {name!r}")
        for label, value in (("workers", workers), ("capacity", capacity)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TaskQueue {name!r}: {label} must be an int >= 1, got {value!r}")
        for index, mw in enumerate(middleware):
            if not callable(mw):
                raise TypeError(f"TaskQueue {name!r}: middleware[{index}] is not callable: {mw!r}")
        for index, hook in enumerate(on_error):
            if not callable(hook):
                raise TypeError(f"TaskQueue {name!r}: on_error[{index}] is not callable: {hook!r}")
        self.name = name
        self.capacity = capacity
        self.workers = workers
        self._middleware = tuple(middleware)
        self._on_error = tuple(on_error)
        hooks = bind_hooks(observers)
        self._hooks_submit = hooks["on_submit"]
        self._hooks_start = hooks["on_start"]
        self._hooks_complete = hooks["on_complete"]
        self._hooks_reject = hooks["on_reject"]
        slow_hooks = hooks["on_slow_submit"]
        self._slow_observers: list[tuple[Callable[..., Any], float]] = []
        for observer in observers:
            method = getattr(observer, "on_slow_submit", None)
            if method is not None and method in slow_hooks:
                threshold = float(getattr(observer, "slow_submit_threshold", 1.0))
                self._slow_observers.append((method, threshold))
        self._registry = registry
        self._default = default
        self._store = store
        self._durable: DurableRunner | None = None
        if store is not None:  # durable mode: the store is the queue, workers execute
            self._durable = DurableRunner.for_queue(
                name, store, workers=workers, capacity=capacity, dispatch=self._run_durable
            )

        self._state = _NEW
        self._stopping = False
        self._depth = 0
        self._keys: dict[Hashable, deque[_Job] | None] = {}
        self._kinds: dict[Callable[..., Any], _Tally] = {}
        self._tallies: dict[str, _Tally] = {}
        self._room_waiters: deque[anyio.Event] = deque()
        self._worker_states = [_Worker() for _ in range(workers)]
        self._live_workers = 0
        self._send, self._recv = anyio.create_memory_object_stream[_Job](capacity)
        self._canceller = self._cancel
        self._outer_tg: TaskGroup | None = None
        self._worker_tg: TaskGroup | None = None
        self._workers_done: anyio.Event | None = None
        self._closed: anyio.Event | None = None

    def __repr__(self) -> str:
        state = ("new", "open", "closing", "closed")[self._state]
        return (
            f"<TaskQueue {self.name!r} {state} depth={self._depth}/{self.capacity} "
            f"workers={self.workers}>"
        )

    # -- submitting -------------------------------------------------------------------
    def submit_nowait(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        key: Hashable | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[T]:
        """Queue ``fn(*args, **kwargs)`` now; ``QueueFull`` if there is no room.

        ``key`` and the names of this method's own options cannot be passed through to
        ``fn`` as keywords; wrap ``fn`` in ``functools.partial`` for that. In durable
        mode the task is accepted, and on disk after ``await handle.persisted()``.
        """
        if self._durable is not None or idempotency_key is not None:
            return durable_runner(self, key, idempotency_key).submit_nowait(
                fn, args, kwargs, idempotency_key=idempotency_key
            )
        tally = self._kinds.get(fn)
        if tally is None:
            tally = self._tally_for(fn)
        if self._state != _OPEN:
            raise self._refuse(tally, self._closed_error())
        if self._depth >= self.capacity:
            raise self._refuse(tally, self._full_error(""))
        job = _Job(tally.name, canceller=self._canceller)
        job.fn = fn
        job.args = args
        job.kwargs = kwargs
        job.key = key
        job.ctx = copy_context()
        job.tally = tally
        job.worker = None
        job.info = None
        job.t_submit = time.perf_counter()
        self._send.send_nowait(job)
        self._depth += 1
        tally.submitted += 1
        if self._hooks_submit:
            call_hooks(self._hooks_submit, self._info(job))
        return job

    async def submit(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        key: Hashable | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[T]:
        """Queue ``fn(*args, **kwargs)``, waiting up to ``timeout`` seconds for room.

        Raises ``QueueFull`` when no room appeared in time and ``QueueClosed`` once the
        queue is closing. Waiting submitters are served first come, first served. In
        durable mode the task is committed and fsynced when this returns.
        """
        if self._durable is not None or idempotency_key is not None:
            return await durable_runner(self, key, idempotency_key).submit(
                fn, args, kwargs, idempotency_key=idempotency_key, timeout=timeout
            )
        if self._depth < self.capacity or self._state != _OPEN:
            return self.submit_nowait(fn, *args, key=key, **kwargs)
        tally = self._kinds.get(fn) or self._tally_for(fn)
        started = time.perf_counter()
        with anyio.move_on_after(timeout) as deadline:
            while self._state == _OPEN and self._depth >= self.capacity:
                waiter = anyio.Event()
                self._room_waiters.append(waiter)
                try:
                    await waiter.wait()
                except BaseException:
                    if waiter.is_set():
                        self._wake_submitter()  # pass the room on to the next waiter
                    else:
                        self._room_waiters.remove(waiter)
                    raise
        if deadline.cancelled_caught and self._state == _OPEN and self._depth >= self.capacity:
            raise self._refuse(tally, self._full_error(f" after waiting {timeout}s"))
        handle = self.submit_nowait(fn, *args, key=key, **kwargs)
        if self._slow_observers and isinstance(handle, _Job):
            waited = time.perf_counter() - started
            for hook, threshold in self._slow_observers:
                if waited >= threshold:
                    call_hooks((hook,), self._info(handle), waited)
        return handle

    def _tally_for(self, fn: Callable[..., Any]) -> _Tally:
        """Slow path of submit: validate ``fn`` and find (and maybe cache) its tally."""
        if type(fn) is types.MethodType:
            cached = self._kinds.get(fn.__func__)
            if cached is not None:
                return cached
        if not callable(fn):
            raise TypeError(f"TaskQueue {self.name!r}: {fn!r} is not callable")
        if not _is_async_callable(fn):
            raise TypeError(
                f"TaskQueue {self.name!r}: {_task_name(fn)} is not an async function. "
                "TaskQueue runs coroutines on the event loop; run blocking code with "
                "corral.sync (corral.sync.TaskQueue or corral.sync.spawn), never in a "
                "hidden thread"
            )
        name = _task_name(fn)
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = _Tally(name)
        base: object = fn.__func__ if type(fn) is types.MethodType else fn
        if type(base) is types.FunctionType:
            if len(self._kinds) >= _KIND_CACHE_LIMIT:
                self._kinds.clear()  # bounds memory when callers create functions on the fly
            self._kinds[base] = tally
        return tally

    def _refuse(self, tally: _Tally, error: Exception) -> Exception:
        tally.rejected += 1
        if self._hooks_reject:
            call_hooks(self._hooks_reject, self.name, tally.name, error)
        return error

    def _closed_error(self) -> QueueClosed:
        if self._state == _NEW:
            return QueueClosed(
                f"queue {self.name!r} is not open yet: use 'async with TaskQueue(...) as q'"
            )
        return QueueClosed(f"queue {self.name!r} is closed and accepts no new tasks")

    def _full_error(self, detail: str) -> QueueFull:
        return QueueFull(
            f"queue {self.name!r} is full{detail}: depth {self._depth}, capacity "
            f"{self.capacity}; shed load (HTTP 429/503) or retry later"
        )

    def _wake_submitter(self) -> None:
        waiters = self._room_waiters
        if waiters:
            waiters.popleft().set()

    # -- per-task bookkeeping ---------------------------------------------------------
    def _info(self, job: _Job) -> TaskInfo:
        info = job.info
        if info is None:
            info = job.info = TaskInfo(
                self.name, job.name, job, job.args, job.kwargs, job.key, job.tally.add_retry
            )
        return info

    def _call_chain(self, job: _Job) -> Awaitable[Any]:
        fn, args, kwargs = job.fn, job.args, job.kwargs
        return run_chain(self._middleware, self._info(job), lambda: fn(*args, **kwargs))

    def _cancel(self, handle: TaskHandle[Any]) -> bool:
        """``handle.cancel()``: drop a queued task, or cancel the scope of its worker."""
        job = handle
        assert isinstance(job, _Job)
        if job.done():
            return False
        worker = job.worker
        if worker is None:  # still queued, in the stream or parked behind its key
            self._drop(job, "was cancelled before it started")
            return True
        if worker.job is job and worker.scope is not None:
            worker.scope.cancel()
            return True
        return False  # pragma: no cover - a started job is either running or done

    def _drop(self, job: _Job, why: str) -> None:
        """Resolve a task that never started as cancelled."""
        if job._set_exception(TaskCancelled(f"task {job.name!r} (id {job.id}) {why}")):
            job.tally.cancelled += 1
            self._depth -= 1
            self._wake_submitter()
            if self._hooks_complete:
                call_hooks(self._hooks_complete, self._info(job), "cancelled", job._exception)

    def _release(self, key: Hashable) -> _Job | None:
        """The next live task parked behind ``key``, or None after freeing the key."""
        parked = self._keys.get(key)
        while parked:
            job = parked.popleft()
            if not job.done():
                return job
        del self._keys[key]
        return None

    async def _failed(self, job: _Job, exc: Exception) -> None:
        """Everything that happens after a task raised: hooks, Sentry, logging."""
        reported = False
        if self._on_error:
            info = self._info(job)
            for hook in self._on_error:
                try:
                    outcome = hook(info, exc)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    _log.exception("on_error hook %r raised; ignored", hook)
            reported = True
        try:
            if sentry_active():
                job.ctx.run(
                    report_exception,
                    exc,
                    queue=self.name,
                    task=job.name,
                    task_id=job.id,
                    key=job.key,
                )
                reported = True
        except Exception:
            _log.exception("reporting a task failure to Sentry failed; ignored")
        if reported:
            _log.debug("task %s/%s (id %s) failed: %r", self.name, job.name, job.id, exc)
        else:
            _log.error("task %s/%s (id %s) failed", self.name, job.name, job.id, exc_info=exc)

    # -- workers ----------------------------------------------------------------------
    async def _work(self, worker: _Worker) -> None:
        receive_nowait = self._recv.receive_nowait
        receive = self._recv.receive
        keys = self._keys
        perf = time.perf_counter
        middleware = bool(self._middleware)
        hooks_start = self._hooks_start
        hooks_complete = self._hooks_complete
        cancelled_exc = anyio.get_cancelled_exc_class()
        nxt: _Job | None = None  # next task of the key this worker holds
        self._live_workers += 1
        try:
            while not self._stopping:
                try:
                    with anyio.CancelScope() as scope:
                        worker.scope = scope
                        mark = perf()
                        while True:
                            if nxt is not None:
                                job, nxt, held = nxt, None, True
                            else:
                                held = False
                                try:
                                    job = receive_nowait()
                                except anyio.WouldBlock:
                                    worker.job = None
                                    try:
                                        job = await receive()
                                    except anyio.EndOfStream:
                                        return
                                    mark = perf()
                                except anyio.EndOfStream:
                                    return
                            if job._state:  # cancelled while queued
                                continue
                            key = job.key
                            if key is not None and not held:
                                if key in keys:
                                    parked = keys[key]
                                    if parked is None:
                                        keys[key] = deque((job,))
                                    else:
                                        parked.append(job)
                                    continue
                                keys[key] = None
                            self._depth -= 1
                            if self._room_waiters:
                                self._room_waiters.popleft().set()
                            worker.job = job
                            job.worker = worker
                            tally = job.tally
                            tally.wait.observe(mark - job.t_submit)
                            if hooks_start:
                                call_hooks(hooks_start, self._info(job))
                            ctx = job.ctx
                            try:
                                if middleware:
                                    coro = ctx.run(self._call_chain, job)
                                else:
                                    coro = ctx.run(job.fn, *job.args, **job.kwargs)
                                if type(coro) is not _CoroutineType:
                                    coro = as_coroutine(coro, job.name)
                                try:
                                    first = ctx.run(coro.send, None)
                                except StopIteration as stop:
                                    result = stop.value
                                else:
                                    result = await step_in_context(ctx, coro, first)
                            except Exception as exc:
                                tally.duration.observe(perf() - mark)
                                tally.error += 1
                                if key is not None:
                                    nxt = self._release(key)
                                job._set_exception(exc)
                                await self._failed(job, exc)
                                if hooks_complete:
                                    call_hooks(hooks_complete, self._info(job), "error", exc)
                                mark = perf()
                            except BaseException as exc:
                                tally.cancelled += 1
                                if key is not None:
                                    nxt = self._release(key)
                                why = (
                                    "was cancelled while running"
                                    if isinstance(exc, cancelled_exc)
                                    else f"was interrupted by {type(exc).__name__}"
                                )
                                job._set_exception(
                                    TaskCancelled(f"task {job.name!r} (id {job.id}) {why}")
                                )
                                if hooks_complete:
                                    call_hooks(
                                        hooks_complete, self._info(job), "cancelled", job._exception
                                    )
                                raise
                            else:
                                now = perf()
                                tally.duration.observe(now - mark)
                                tally.success += 1
                                if key is not None:
                                    nxt = self._release(key)
                                job._set_result(result)
                                if hooks_complete:
                                    call_hooks(hooks_complete, self._info(job), "success", None)
                                mark = now
                            if scope.cancel_called:
                                break  # cancelled by handle.cancel(): open a fresh scope
                except cancelled_exc:
                    # Not absorbed by this worker's scope: either the queue or its host is
                    # being cancelled (stop), or a task raised the backend's cancellation
                    # exception itself (already resolved as cancelled; keep working).
                    if self._stopping or anyio.current_effective_deadline() == -math.inf:
                        raise
                worker.job = None
        finally:
            worker.job = None
            if nxt is not None:
                self._drop(nxt, "was cancelled by the queue's shutdown")
            self._live_workers -= 1
            if self._live_workers == 0 and self._workers_done is not None:
                self._workers_done.set()

    async def _run_workers(self, *, task_status: TaskStatus[None]) -> None:
        """Own the workers in a task group of their own, so a hard stop cancels only them."""
        async with anyio.create_task_group() as tg:
            self._worker_tg = tg
            for index, worker in enumerate(self._worker_states):
                tg.start_soon(self._work, worker, name=f"corral:{self.name}:worker-{index}")
            task_status.started()

    # -- lifecycle --------------------------------------------------------------------
    async def __aenter__(self) -> TaskQueue:
        if self._state != _NEW:
            raise RuntimeError(f"TaskQueue {self.name!r} can be opened only once")
        if self._default:
            _default.install(self)
        try:
            if self._durable is not None:
                await self._durable.open()  # a bad store file fails here, before any task
            self._workers_done = anyio.Event()
            self._closed = anyio.Event()
            outer = anyio.create_task_group()
            await outer.__aenter__()
            self._outer_tg = outer
            await outer.start(self._run_workers)
            if self._durable is not None:
                collector_for(self._registry).add_source(self._durable)
                await outer.start(self._durable.feed, name=f"corral:{self.name}:durable-feeder")
            self._state = _OPEN
            collector_for(self._registry).add_source(self)
        except BaseException:
            if self._durable is not None:
                await self._durable.close()
            if self._default:
                _default.uninstall(self)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool | None:
        assert self._outer_tg is not None
        try:
            try:
                if exc is None:
                    await self.aclose()
                else:
                    await self._stop_now()
            except BaseException as close_error:
                await self._outer_tg.__aexit__(
                    type(close_error), close_error, close_error.__traceback__
                )
                raise
            return await self._outer_tg.__aexit__(exc_type, exc, tb)
        finally:
            self._cancel_leftovers()
            self._state = _CLOSED
            if self._closed is not None:
                self._closed.set()
            if self._default:
                _default.uninstall(self)

    def _run_durable(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Durable mode: hand a claimed task to the workers (the store bounded it already)."""
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = _Tally(name)
        job = _Job(name, canceller=self._canceller)
        job.fn = run
        job.args = ()
        job.kwargs = {}
        job.key = None
        job.ctx = copy_context()
        job.tally = tally
        job.worker = None
        job.info = None
        job.t_submit = time.perf_counter()
        self._send.send_nowait(job)
        self._depth += 1
        tally.submitted += 1

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting tasks, drain for up to ``timeout`` seconds, then cancel the rest.

        ``timeout=None`` drains completely. Safe to call twice or from several tasks:
        later calls wait for the first to finish.
        """
        if self._state == _NEW:
            self._state = _CLOSED
            return
        if self._state != _OPEN:
            assert self._closed is not None
            if not self._closed.is_set() and self._state == _CLOSING:
                await self._closed.wait()
            return
        assert self._workers_done is not None and self._closed is not None
        self._state = _CLOSING
        while self._room_waiters:
            self._room_waiters.popleft().set()  # waiting submitters now see QueueClosed
        try:
            with anyio.move_on_after(timeout):
                if self._durable is not None:  # run what is due; future retries stay stored
                    await self._durable.drain()
                    await self._durable.stop_feeding()
                self._send.close()  # workers exit once the stream is empty and keys drained
                await self._workers_done.wait()
        finally:
            if not self._workers_done.is_set():
                await self._stop_now()
            if self._durable is not None:
                await self._durable.close()
            self._cancel_leftovers()
            self._closed.set()

    async def _stop_now(self) -> None:
        """Cancel the workers (and the tasks they run) and wait until they have exited."""
        self._state = max(self._state, _CLOSING)
        self._stopping = True
        if self._durable is not None:
            await self._durable.stop_feeding()
        self._send.close()
        while self._room_waiters:
            self._room_waiters.popleft().set()
        if self._worker_tg is not None:
            self._worker_tg.cancel_scope.cancel()
        if self._workers_done is not None:
            with anyio.CancelScope(shield=True):
                await self._workers_done.wait()
        if self._durable is not None:
            await self._durable.close()
        self._cancel_leftovers()

    def _cancel_leftovers(self) -> None:
        """Resolve every task that never started (stream and parked) as cancelled."""
        while True:
            try:
                job = self._recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            self._drop(job, "was cancelled by the queue's shutdown")
        for parked in list(self._keys.values()):
            if parked:
                for job in parked:
                    self._drop(job, "was cancelled by the queue's shutdown")
        if self._live_workers == 0:
            self._keys.clear()

    # -- observability ----------------------------------------------------------------
    def stats(self) -> QueueStats:
        """Depth, capacity, workers, busy workers and task totals, without Prometheus."""
        tallies = list(self._tallies.values())
        return QueueStats(
            name=self.name,
            depth=self._depth,
            capacity=self.capacity,
            workers=self.workers,
            busy=self._busy(),
            submitted=sum(t.submitted for t in tallies),
            rejected=sum(t.rejected for t in tallies),
            completed=sum(t.success for t in tallies),
            failed=sum(t.error for t in tallies),
            cancelled=sum(t.cancelled for t in tallies),
        )

    def _busy(self) -> int:
        return sum(1 for w in self._worker_states if w.job is not None)

    def metric_families(self) -> Iterable[Metric]:
        """This queue's metrics, read at scrape time (see :mod:`corral.metrics`)."""
        q = [self.name]
        for metric, doc, value in (
            ("corral_queue_depth", "Tasks accepted and not yet started", self._depth),
            ("corral_queue_capacity", "Most tasks that may wait in the queue", self.capacity),
            ("corral_queue_workers", "Worker tasks of the queue", self.workers),
            ("corral_queue_busy_workers", "Workers running a task now", self._busy()),
        ):
            gauge = GaugeMetricFamily(metric, doc, labels=["queue"])
            gauge.add_metric(q, value)
            yield gauge
        tallies = list(self._tallies.values())
        labels = ["queue", "task"]
        submitted = CounterMetricFamily(
            "corral_tasks_submitted_total", "Tasks accepted by the queue", labels=labels
        )
        rejected = CounterMetricFamily(
            "corral_tasks_rejected_total", "Submissions refused (full or closed)", labels=labels
        )
        retries = CounterMetricFamily(
            "corral_task_retries_total", "Retries made by the retry middleware", labels=labels
        )
        completed = CounterMetricFamily(
            "corral_tasks_completed_total",
            "Tasks finished, by outcome (success, error, cancelled)",
            labels=[*labels, "outcome"],
        )
        for t in tallies:
            submitted.add_metric([self.name, t.name], t.submitted)
            rejected.add_metric([self.name, t.name], t.rejected)
            retries.add_metric([self.name, t.name], t.retries)
            completed.add_metric([self.name, t.name, "success"], t.success)
            completed.add_metric([self.name, t.name, "error"], t.error)
            completed.add_metric([self.name, t.name, "cancelled"], t.cancelled)
        yield submitted
        yield rejected
        yield completed
        yield retries
        yield histogram_family(
            "corral_task_duration_seconds",
            "Time a task ran (all attempts)",
            labels,
            (((self.name, t.name), t.duration) for t in tallies),
        )
        yield histogram_family(
            "corral_task_wait_seconds",
            "Time a task waited between submit and start",
            labels,
            (((self.name, t.name), t.wait) for t in tallies),
        )
