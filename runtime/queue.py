"""TaskQueue: bounded, observable, crash-proof background work; what replaces create_task.

Design, driven by where per-task time goes (DESIGN.md, "Measured facts"):

- ``workers`` long-lived tasks pop from one line of accepted tasks
  (:mod:`corral._queue_line`), awaiting only when it is empty. There is no task and no
  cancel scope per submission. ``capacity`` is enforced by a depth counter that also
  covers tasks parked behind their key.
- The handle *is* the queue entry (:class:`corral._job.Job`): one allocation per
  submission, never reused (nothing sound tells whether a submitter still holds it).
- Context and stepping: each task runs in its own snapshot of its submitter's context,
  taken at submit, stepped by the worker through :mod:`corral._stepper` (shared with
  TaskGroup), which also gives the event loop back every few milliseconds of work.
- Counters are plain integers and histograms plain bucket arrays on a per-task-name
  tally, batched in worker locals while tasks run back to back; gauges (depth, busy
  workers) are read when Prometheus scrapes.
- Each worker owns one cancel scope that lives across many tasks; ``handle.cancel()`` on
  a running task cancels that scope and the worker opens a fresh one, so only cancelled
  tasks pay for a scope.
- Per-key ordering: a key maps to ``None`` while one of its tasks runs, or to a deque of
  tasks parked behind it; the worker that finishes a keyed task runs the next parked one
  itself, and the key's entry is deleted when nothing is parked, so idle keys cost no
  memory.
- The hot loop lives in :mod:`corral._queue_worker`, the metric families in
  :mod:`corral._queue_metrics`.
- Durable mode (``store=``): ``submit`` persists through :mod:`corral.durable`, whose
  feeder hands claimed rows to the same workers (``_run_durable``); the worker loop is
  unchanged and non-durable submits pay one extra comparison.
"""

from __future__ import annotations

import builtins
import inspect
import logging
import sys
import time
import types
import weakref
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Sequence,
)
from contextvars import Context, copy_context
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from . import _default
from ._delays import DelayLine
from ._due import delay_seconds
from ._job import Job, Tally, Worker, is_async_callable, new_job, perf_counter, task_name
from ._queue_line import Line
from ._queue_metrics import queue_families
from ._queue_worker import work
from .durable import DurableRunner, durable_runner
from .errors import QueueClosed, QueueFull, TaskCancelled
from .handles import TaskHandle
from .metrics import collector_for
from .middleware import Middleware, is_retry
from .observers import bind_hooks, call_hooks
from .sentry import report_exception, sentry_active
from .store.base import Store, TaskState
from .task_info import TaskInfo

__all__ = ["ErrorHook", "QueueStats", "TaskQueue", "open_queues"]

T = TypeVar("T")

_log = logging.getLogger("corral.queue")

ErrorHook = Callable[[TaskInfo, Exception], "Awaitable[object] | object"]

_NEW, _OPEN, _CLOSING, _CLOSED = 0, 1, 2, 3
#: How long a hard stop waits for cancelled tasks before it says which ones it waits for (s).
STOP_GRACE = 1.0
# queues that were opened, for leak reports (the pytest plugin's "never closed"); touched
# once per open, never per task
_opened: weakref.WeakSet[TaskQueue] = weakref.WeakSet()
_KIND_CACHE_LIMIT = 4096
_EXCEPTION_GROUPS: tuple[type[Any], ...] = tuple(
    group
    for group in (
        getattr(builtins, "BaseExceptionGroup", None),
        getattr(sys.modules.get("exceptiongroup"), "BaseExceptionGroup", None),
    )
    if group is not None
)


def open_queues() -> list[TaskQueue]:
    """Every TaskQueue in the process that is open now (opened and not yet closed)."""
    return [queue for queue in list(_opened) if queue.is_open]


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


def _sole_exception(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, else ``exc`` itself."""
    leaf = exc
    while isinstance(leaf, _EXCEPTION_GROUPS) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    return leaf


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
    is then accepted by ``submit`` and ``submit_nowait``, ``key=`` (a str) orders tasks in
    the store (across restarts, and across a fleet on Redis), and ``priority=`` (0..9,
    durable stores) orders claims. ``delay=``/``not_before=`` work in both modes.

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
            if any(is_retry(mw) for mw in self._middleware):
                raise ValueError(
                    f"TaskQueue {name!r}: middleware.retry cannot be combined with store=: "
                    "a durable task retries through the store, which persists every attempt "
                    "and its backoff; a second, in-memory retry around it would run attempts "
                    "the store does not know of. Remove middleware.retry and set the policy "
                    "with @corral.task(retry=corral.Retry(...)) (default: corral.Retry())"
                )
            # Middleware wraps each durable *attempt* (inside the store's bookkeeping),
            # so calling call_next twice re-runs the task, never the attempt.
            self._durable = DurableRunner.for_queue(
                name,
                store,
                workers=workers,
                capacity=capacity,
                dispatch=self._run_durable,
                middleware=self._middleware,
                count_cancelled=self._count_cancelled,
                stamps=tuple(
                    stamp
                    for stamp in (getattr(o, "durable_headers", None) for o in observers)
                    if callable(stamp)
                ),
            )

        self._state = _NEW
        self._limit = -1  # capacity while open, -1 otherwise: one comparison per submit
        self._stopping = False
        self._depth = 0
        self._keys: dict[Hashable, deque[Job] | None] = {}
        self._delays: DelayLine | None = None  # created on the first delayed submit
        self._kinds: dict[Callable[..., Any], Tally] = {}
        self._tallies: dict[str, Tally] = {}
        # reason -> accepted tasks that never ran (corral_tasks_dropped_total)
        self._dropped: dict[str, int] = {"drain_timeout": 0, "shutdown": 0}
        self._stop_reason = "shutdown"  # or "drain_timeout" once aclose(timeout=) ran out
        self._lost: dict[str, int] = {}  # task name -> dropped by the current stop
        self._interrupted: dict[str, int] = {}  # task name -> cancelled running by a stop
        self._room_waiters: deque[anyio.Event] = deque()
        # ``_depth`` enforces capacity (it also counts tasks parked behind their key); the
        # line also holds tasks cancelled while queued until a worker skips them.
        self._line = Line(2 * capacity)
        self._worker_states = [Worker() for _ in range(workers)]
        self._live_workers = 0
        self._canceller = self._cancel
        self._outer_tg: TaskGroup | None = None
        self._worker_tg: TaskGroup | None = None
        self._workers_done: anyio.Event | None = None
        self._closed: anyio.Event | None = None

    def _set_state(self, state: int) -> None:
        self._state = state
        self._limit = self.capacity if state == _OPEN else -1

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
        delay: float | None = None,
        not_before: datetime | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> TaskHandle[T]:
        """Queue ``fn(*args, **kwargs)`` now; ``QueueFull`` if there is no room.

        ``delay`` (seconds) or ``not_before`` (a timezone-aware datetime) hold the task
        until then without holding a worker; it counts against ``capacity`` meanwhile.
        ``priority`` needs a durable queue. ``key`` and the names of this method's own
        options cannot be passed through to ``fn`` as keywords; wrap ``fn`` in
        ``functools.partial`` for that. In durable mode the task is accepted, and on disk
        after ``await handle.persisted()``.
        """
        if self._durable is not None or idempotency_key is not None or priority is not None:
            return durable_runner(self, idempotency_key, priority).submit_nowait(
                fn,
                args,
                kwargs,
                idempotency_key=idempotency_key,
                delay=delay,
                not_before=not_before,
                key=key,
                priority=priority,
            )
        tally = self._kinds.get(fn)
        if tally is None:
            tally = self._tally_for(fn)
        if key is not None:
            self._check_key(key)
        hold = None
        if delay is not None or not_before is not None:
            hold = delay_seconds(f"TaskQueue {self.name!r}", delay, not_before, now=time.time())
        if self._depth >= self._limit:
            if self._state != _OPEN:
                raise self._refuse(tally, self._closed_error())
            raise self._refuse(tally, self._full_error(""))
        return self._enqueue(tally, fn, args, kwargs, key, None, hold)

    def _enqueue(
        self,
        tally: Tally,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        key: Hashable | None,
        info: TaskInfo | None = None,
        hold: float | None = None,
    ) -> Job:
        """Create the entry and hand it to the workers (the caller checked for room);
        with ``hold`` (seconds), to the delay line first."""
        # The handle's fields are written here rather than through TaskHandle.__init__:
        # this is the hottest line of the runtime and a constructor call doubles its cost.
        job = new_job(Job)
        job._result = None
        job._exception = None
        job._callbacks = None
        job._canceller = self._canceller
        job._id = None
        job.info = info
        job._state = 0
        job.name = tally.name
        job.fn = fn
        job.args = args
        job.kwargs = kwargs or None
        job.key = key
        # The task's own snapshot of the submitter's context: never shared with another
        # task and never compared (equality of contexts compares user values).
        job.ctx = copy_context()
        job.tally = tally
        job.t_submit = perf_counter()
        if hold is not None:
            delays = self._delays
            if delays is None:
                delays = self._delays = DelayLine(self)
            delays.add(job, hold)
        elif not self._line.put(job):
            raise self._refuse(tally, self._full_error(" of cancelled tasks"))
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
        delay: float | None = None,
        not_before: datetime | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> TaskHandle[T]:
        """Queue ``fn(*args, **kwargs)``, waiting up to ``timeout`` seconds for room.

        Raises ``QueueFull`` when no room appeared in time and ``QueueClosed`` once the
        queue is closing. Waiting submitters are woken in arrival order as room appears.
        In durable mode the task is committed and fsynced when this returns. ``delay``,
        ``not_before`` and ``priority`` as for :meth:`submit_nowait`.
        """
        if self._durable is not None or idempotency_key is not None or priority is not None:
            return await durable_runner(self, idempotency_key, priority).submit(
                fn,
                args,
                kwargs,
                idempotency_key=idempotency_key,
                timeout=timeout,
                delay=delay,
                not_before=not_before,
                key=key,
                priority=priority,
            )
        tally = self._kinds.get(fn)
        if tally is None:
            tally = self._tally_for(fn)
        if key is not None:
            self._check_key(key)
        hold = None
        if delay is not None or not_before is not None:
            hold = delay_seconds(f"TaskQueue {self.name!r}", delay, not_before, now=time.time())
        if self._depth < self._limit:
            return self._enqueue(tally, fn, args, kwargs, key, None, hold)
        if self._state != _OPEN:
            raise self._refuse(tally, self._closed_error())
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
        if hold is not None:  # measured from submit: the wait for room counts
            waited = time.perf_counter() - started
            hold = max(0.0, hold - waited)
        handle = self.submit_nowait(fn, *args, key=key, delay=hold, **kwargs)
        if self._slow_observers and isinstance(handle, Job):
            waited = time.perf_counter() - started
            for hook, threshold in self._slow_observers:
                if waited >= threshold:
                    call_hooks((hook,), self._info(handle), waited)
        return handle

    def _tally_for(self, fn: Callable[..., Any]) -> Tally:
        """Slow path of submit: validate ``fn`` and find (and maybe cache) its tally."""
        if type(fn) is types.MethodType:
            cached = self._kinds.get(fn.__func__)
            if cached is not None:
                return cached
        if inspect.iscoroutine(fn):
            fn.close()  # it will never run: spare the "never awaited" warning
            raise TypeError(
                f"TaskQueue {self.name!r}: got a coroutine object; pass the async function "
                "and its arguments instead: submit_nowait(send_email, user_id), not "
                "submit_nowait(send_email(user_id))"
            )
        if not callable(fn):
            raise TypeError(f"TaskQueue {self.name!r}: {fn!r} is not callable")
        if not is_async_callable(fn):
            raise TypeError(
                f"TaskQueue {self.name!r}: {task_name(fn)} is not an async function. "
                "Pass an async function and its arguments (not a lambda wrapping a call). "
                "For blocking code use corral.sync (corral.sync.TaskQueue or "
                "corral.sync.spawn): TaskQueue never hides threads"
            )
        name = task_name(fn)
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = Tally(self, name)
        base: object = fn.__func__ if type(fn) is types.MethodType else fn
        if type(base) is types.FunctionType:
            if len(self._kinds) >= _KIND_CACHE_LIMIT:
                self._kinds.clear()  # bounds memory when callers create functions on the fly
            self._kinds[base] = tally
        return tally

    def _check_key(self, key: object) -> None:
        """Refuse an unhashable key at submit time rather than in a worker."""
        try:
            hash(key)
        except TypeError:
            raise TypeError(
                f"TaskQueue {self.name!r}: key must be hashable (str, int, tuple, ...), "
                f"got {type(key).__name__}"
            ) from None

    def _refuse(self, tally: Tally, error: Exception) -> Exception:
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
    def _info(self, job: Job) -> TaskInfo:
        info = job.info
        if info is None:
            info = job.info = TaskInfo(
                self.name, job.name, job, job.args, job.kwargs or {}, job.key, job.tally.add_retry
            )
        return info

    def _cancel(self, handle: TaskHandle[Any]) -> bool:
        """``handle.cancel()``: drop a queued task, or cancel the scope of its worker.

        Rare, so it searches the workers instead of making every task record its worker.
        """
        job = handle
        assert isinstance(job, Job)
        if job._state:
            return False
        for worker in self._worker_states:
            if worker.job is job:
                assert worker.scope is not None
                worker.interrupted = True
                worker.scope.cancel()
                return True
        # Still queued: in the line, parked behind its key, next in its key's line, or
        # delayed.
        self._drop(job, "was cancelled before it started")
        if self._delays is not None:
            self._delays.cancelled()
        return True

    def _drop(self, job: Job, why: str) -> bool:
        """Resolve a task that never started as cancelled; False if it was resolved already."""
        if not job._set_exception(TaskCancelled(f"task {job.name!r} (id {job.id}) {why}")):
            return False
        job.tally.cancelled += 1
        self._depth -= 1
        self._wake_submitter()
        if self._hooks_complete:
            call_hooks(self._hooks_complete, self._info(job), "cancelled", job._exception)
        return True

    def _drop_at_stop(self, job: Job) -> None:
        """A shutdown drops an accepted task that never ran: remember it for the report."""
        if self._drop(job, "was cancelled by the queue's shutdown"):
            self._lost[job.name] = self._lost.get(job.name, 0) + 1

    def _report_lost(self) -> None:
        """One WARNING line and the dropped counter for what the stop just dropped."""
        lost, self._lost = self._lost, {}
        interrupted, self._interrupted = self._interrupted, {}
        if not lost and not interrupted:
            return
        dropped = sum(lost.values())
        self._dropped[self._stop_reason] = self._dropped.get(self._stop_reason, 0) + dropped
        why = "drain timeout" if self._stop_reason == "drain_timeout" else "shutdown"
        parts = [f"queue {self.name!r} {why}: {dropped} accepted task(s) never ran"]
        if lost:
            parts.append(", ".join(f"{name} x{n}" for name, n in sorted(lost.items())))
        if interrupted:
            parts.append(
                f"{sum(interrupted.values())} running task(s) were cancelled: "
                + ", ".join(f"{name} x{n}" for name, n in sorted(interrupted.items()))
            )
        if self._durable is not None:
            parts.append("durable: they stay stored and run after a restart")
        _log.warning("; ".join(parts))

    def _release(self, key: Hashable) -> Job | None:
        """The next live task parked behind ``key``, or None after freeing the key."""
        parked = self._keys.get(key)
        while parked:
            job = parked.popleft()
            if not job.done():
                return job
        del self._keys[key]
        return None

    async def _failed(self, job: Job, exc: Exception, context: Context) -> None:
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
                context.run(  # the task's own context: its Sentry scope comes along
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

    async def _run_workers(self, *, task_status: TaskStatus[None]) -> None:
        """Own the workers in a task group of their own, so a hard stop cancels only them."""
        async with anyio.create_task_group() as tg:
            self._worker_tg = tg
            for index, worker in enumerate(self._worker_states):
                tg.start_soon(work, self, worker, name=f"corral:{self.name}:worker-{index}")
            task_status.started()

    # -- lifecycle --------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True from a successful open until the queue has closed (drained or stopped)."""
        return self._state in (_OPEN, _CLOSING)

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
            self._set_state(_OPEN)
            _opened.add(self)
            collector_for(self._registry).add_source(self)
        except BaseException:
            if self._durable is not None:
                await self._durable.close()
            if self._default:
                _default.uninstall(self)
            await self._abandon_open(*sys.exc_info())
            raise
        return self

    async def _abandon_open(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Undo a failed ``__aenter__``: close the line and leave the task group."""
        self._set_state(_CLOSED)
        self._line.close()
        if self._outer_tg is not None:
            await self._outer_tg.__aexit__(exc_type, exc, tb)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool | None:
        assert self._outer_tg is not None
        error = exc
        try:
            if exc is None:
                await self.aclose()
            else:
                await self._stop_now()
        except BaseException as close_error:  # cancelled while draining
            error = close_error
        # The supervisor task group sees only cancellation (so it can absorb its own and
        # report a crashed worker); the block's own exceptions propagate untouched
        # instead of being wrapped in an exception group.
        passed = error if isinstance(error, anyio.get_cancelled_exc_class()) else None
        try:
            suppressed = await self._outer_tg.__aexit__(
                None if passed is None else type(passed),
                passed,
                None if passed is None else passed.__traceback__,
            )
        except BaseException as group:
            leaf = _sole_exception(group)
            if leaf is group:
                raise
            raise leaf from None
        finally:
            self._cancel_leftovers()
            self._line.close()
            self._set_state(_CLOSED)
            if self._closed is not None:
                self._closed.set()
            if self._default:
                _default.uninstall(self)
        if error is not exc and error is not None and not suppressed:
            raise error
        return suppressed if passed is not None else None

    async def cancel(self, task: str | TaskHandle[Any]) -> TaskState | None:
        """Cancel a durable task by id (or its handle), whichever process holds or runs it.

        Returns the state the task was in: ``"pending"`` (also delayed or waiting for a
        retry): it is ``cancelled`` now, never runs and its handle raises
        :class:`corral.TaskCancelled`; ``"running"``: its attempt is cancelled at its next
        checkpoint by the process running it (here at once; elsewhere within the store's
        check interval), then it is ``cancelled``, never retried nor dead-lettered (a task
        that completes before that checkpoint is done); ``"done"``, ``"dead"`` or
        ``"cancelled"``: it had finished, nothing changed; ``None``: no such task.
        In-memory queues have no ids to look up: use ``handle.cancel()``.
        """
        if self._durable is None:
            raise TypeError(
                f"TaskQueue {self.name!r}: cancel by id needs a durable queue (store=...); "
                "cancel an in-memory task with handle.cancel()"
            )
        return await self._durable.cancel(task if isinstance(task, str) else task.id)

    def _count_cancelled(self, name: str) -> None:
        """A durable task cancelled before it ran (corral_tasks_completed_total)."""
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = Tally(self, name)
        tally.cancelled += 1

    def _run_durable(
        self, run: Callable[[], Coroutine[Any, Any, None]], name: str, info: TaskInfo
    ) -> None:
        """Durable mode: hand a claimed task to the workers (the store bounded it already)."""
        tally = self._tallies.get(name)
        if tally is None:
            tally = self._tallies[name] = Tally(self, name)
        self._enqueue(tally, run, (), None, None, info)

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop accepting tasks, drain for up to ``timeout`` seconds, then cancel the rest.

        ``timeout=None`` drains completely. Safe to call twice or from several tasks:
        later calls wait for the first to finish.
        """
        if self._state == _NEW:
            self._set_state(_CLOSED)
            return
        if self._state != _OPEN:
            assert self._closed is not None
            if not self._closed.is_set() and self._state == _CLOSING:
                await self._closed.wait()
            return
        assert self._workers_done is not None and self._closed is not None
        self._set_state(_CLOSING)
        while self._room_waiters:
            self._room_waiters.popleft().set()  # waiting submitters now see QueueClosed
        try:
            with anyio.move_on_after(timeout):
                if self._durable is not None:  # run what is due; future retries stay stored
                    await self._durable.drain()
                    await self._durable.stop_feeding()
                if self._delays is not None:  # delayed tasks are accepted work: run them
                    await self._delays.emptied.wait()
                    self._delays.stop()
                self._line.close()  # workers exit once the line is empty and keys drained
                await self._workers_done.wait()
        finally:
            if not self._workers_done.is_set():
                self._stop_reason = "drain_timeout"
                await self._stop_now()
            if self._durable is not None:
                await self._durable.close()
            self._cancel_leftovers()
            self._closed.set()

    async def _stop_now(self) -> None:
        """Cancel the workers (and the tasks they run) and wait until they have exited."""
        self._set_state(max(self._state, _CLOSING))
        self._stopping = True
        for worker in self._worker_states:
            # Cancellation reaches a worker only at its next await; a task that finishes
            # without one must not be followed by another: the per-task check of
            # `interrupted` stops the worker first.
            worker.interrupted = True
        if self._delays is not None:
            self._delays.stop()
        if self._durable is not None:
            await self._durable.stop_feeding()
        self._line.close()
        while self._room_waiters:
            self._room_waiters.popleft().set()
        if self._worker_tg is not None:
            self._worker_tg.cancel_scope.cancel()
        if self._workers_done is not None:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(STOP_GRACE):
                    await self._workers_done.wait()
                if not self._workers_done.is_set():
                    self._report_unstoppable()
                    await self._workers_done.wait()
        if self._durable is not None:
            await self._durable.close()
        self._cancel_leftovers()

    def _report_unstoppable(self) -> None:
        """One WARNING naming the running tasks a hard stop has waited for too long.

        Cancellation cannot interrupt a task that shields itself or waits in a thread
        call that cannot be abandoned; the stop still waits for it (structured
        concurrency: the queue's block never ends with a task still running), so the
        log says which task holds the shutdown and why.
        """
        running = [w.job for w in self._worker_states if w.job is not None]
        names = ", ".join(f"{job.name} (id {job.id})" for job in running) or "unknown"
        durable = (
            "; durable: its row stays running until it returns (if the process is killed "
            "first, the next start puts it back to pending)"
            if self._durable is not None
            else ""
        )
        _log.warning(
            "queue %r stop: %d running task(s) ignore cancellation after %.0f s and the stop "
            "waits for them: %s. A task inside CancelScope(shield=True) or a thread call that "
            "cannot be abandoned (anyio.to_thread.run_sync without abandon_on_cancel=True) "
            "holds the shutdown until it returns: bound it%s",
            self.name,
            len(running),
            STOP_GRACE,
            names,
            durable,
        )

    def _cancel_leftovers(self) -> None:
        """Resolve every task that never started (in the line, delayed or parked) as
        cancelled."""
        jobs = self._line.jobs
        while jobs:
            self._drop_at_stop(jobs.popleft())
        if self._delays is not None:
            for job in self._delays.take_all():
                self._drop_at_stop(job)
        for parked in list(self._keys.values()):
            if parked:
                for job in parked:
                    self._drop_at_stop(job)
        if self._live_workers == 0:
            self._keys.clear()
        self._report_lost()

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

    def _is_closed(self) -> bool:
        return self._state == _CLOSED

    def _busy(self) -> int:
        return sum(1 for w in self._worker_states if w.job is not None)

    def metric_families(self) -> Iterable[Metric]:
        """This queue's metrics, read at scrape time (see :mod:`corral._queue_metrics`)."""
        return queue_families(self)
