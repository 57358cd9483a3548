"""corral.sync.TaskQueue and corral.sync.spawn: background jobs for sync services.

There is one TaskQueue implementation: this facade runs the async :class:`corral.TaskQueue`
in an event loop on one thread of its own (an anyio blocking portal), and each job's sync
callable runs on a worker thread through ``anyio.to_thread.run_sync`` with a
CapacityLimiter of ``workers`` threads. So capacity, ``QueueFull``, per-key order,
middleware, hooks, metrics (same names and labels) and Sentry reporting are the async
queue's own, not a second copy of them.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import types
import weakref
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal
from prometheus_client import CollectorRegistry

from .. import _fanout
from ..errors import CorralError, NoDefaultQueue, QueueClosed
from ..handles import TaskHandle
from ..queue import QueueStats
from ..queue import TaskQueue as AsyncTaskQueue
from ._ctrl_c import CtrlC
from .handles import SyncTaskHandle

__all__ = ["TaskQueue", "default_queue", "spawn"]

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_default: TaskQueue | None = None
_open_queues: weakref.WeakSet[TaskQueue] = weakref.WeakSet()
_exit_hook_installed = False

_HOW_TO = (
    'open one at startup: queue = corral.sync.TaskQueue("background", workers=8, '
    "capacity=1000, default=True).open() and call queue.close() at shutdown (or use it as "
    "a `with` block)"
)


class _HardStop(Exception):
    """Handed to the async queue's ``__aexit__`` to make it cancel instead of drain."""


def _finished(future: concurrent.futures.Future[Any], timeout: float | None) -> bool:
    done, _ = concurrent.futures.wait((future,), timeout)
    return bool(done)


def _only(raised: BaseException, marker: BaseException) -> bool:
    leaves = getattr(raised, "exceptions", None)
    if isinstance(leaves, tuple):
        return all(_only(leaf, marker) for leaf in leaves)
    return raised is marker


class _InThread:
    """The async task the queue runs for one sync callable: call it on a worker thread.

    It carries the callable's ``__qualname__``, so metrics, logs and Sentry name the
    user's function rather than this wrapper.
    """

    def __init__(
        self, fn: Callable[..., Any], limiter: anyio.CapacityLimiter, threads: set[threading.Thread]
    ) -> None:
        self.fn = fn
        self.limiter = limiter
        self.threads = threads
        name = getattr(fn, "__qualname__", None)
        self.__qualname__ = name if isinstance(name, str) else _fanout.describe(fn)
        self.__name__ = self.__qualname__

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(_call_sync, self.fn, args, kwargs, self.threads)
        return await anyio.to_thread.run_sync(call, limiter=self.limiter)


def _call_sync(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    threads: set[threading.Thread],
) -> Any:
    """Runs on the worker thread; an awaitable result is a misuse, reported as such."""
    threads.add(threading.current_thread())  # so that close() can join it
    result = fn(*args, **kwargs)
    if isinstance(result, types.CoroutineType):
        raise _fanout.returned_awaitable_error(fn, result, "corral.sync.TaskQueue")
    return result


class TaskQueue:
    """A bounded queue of sync jobs run by ``workers`` threads: the sync TaskQueue.

    ``submit_nowait`` raises :class:`corral.QueueFull` when ``capacity`` jobs wait;
    ``submit(..., timeout=)`` blocks the calling thread for room. Handles are
    :class:`corral.sync.SyncTaskHandle` (``result(timeout=)``). Use it as a ``with``
    block, or ``open()`` at startup and ``close()`` at shutdown; ``close()`` drains
    (``timeout=`` bounds the wait, then running jobs are cancelled: a job already running
    on a thread finishes, jobs not started resolve as cancelled). With ``default=True`` it
    serves :func:`corral.sync.spawn` while open. A queue still open when the interpreter
    exits is closed (drained) then, as Python waits for non-daemon threads.
    ``middleware``, ``on_error``, ``observers`` and ``registry`` are the async
    TaskQueue's, and run in the queue's
    event-loop thread; ``backend`` picks that loop ("asyncio" or "trio"). Every thread
    is stopped by ``close()``, except that on trio idle worker threads go back to trio's
    process-wide thread cache (reused, and gone after 10 s idle).
    """

    def __init__(
        self,
        name: str,
        *,
        workers: int,
        capacity: int,
        default: bool = False,
        middleware: Sequence[Any] = (),
        on_error: Sequence[Any] = (),
        observers: Sequence[object] = (),
        registry: CollectorRegistry | None = None,
        backend: str = "asyncio",
    ) -> None:
        self._queue = AsyncTaskQueue(
            name,
            workers=workers,
            capacity=capacity,
            middleware=middleware,
            on_error=on_error,
            observers=observers,
            registry=registry,
        )
        self.name = name
        self.workers = workers
        self.capacity = capacity
        self._default = default
        self._backend = backend
        self._limiter: anyio.CapacityLimiter | None = None
        self._wrappers: dict[Callable[..., Any], _InThread] = {}
        self._threads: set[threading.Thread] = set()  # worker threads that ran jobs
        self._portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._queue_cm: AbstractContextManager[AsyncTaskQueue] | None = None
        self._loop_thread: int | None = None
        # Short calls into the loop go through its token (no task per call, unlike
        # portal.call): submit_nowait and cancel. Both carry the caller's context.
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._lock = threading.Lock()  # shared by this queue's handles
        self._state = "new"

    def __repr__(self) -> str:
        return f"<corral.sync.TaskQueue {self.name!r} {self._state} workers={self.workers}>"

    # -- lifecycle --------------------------------------------------------------------
    def open(self) -> TaskQueue:
        """Start the queue's event-loop thread and workers; returns the queue."""
        if self._state != "new":
            raise RuntimeError(f"corral.sync.TaskQueue {self.name!r} can be opened only once")
        if self._default:
            _install(self)
        try:
            _close_at_exit(self)
            self._portal_cm = start_blocking_portal(self._backend)
            self._portal = self._portal_cm.__enter__()
            self._loop_thread = self._portal.call(threading.get_ident)
            self._token = self._portal.call(anyio.lowlevel.current_token)
            self._limiter = self._portal.call(anyio.CapacityLimiter, self.workers)
            self._queue_cm = self._portal.wrap_async_context_manager(self._queue)
            self._queue_cm.__enter__()
        except BaseException:
            if self._portal_cm is not None:
                self._portal_cm.__exit__(None, None, None)
            _uninstall(self)
            raise
        self._state = "open"
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting jobs, drain for up to ``timeout`` seconds, cancel the rest.

        A ``KeyboardInterrupt`` while draining cancels what is left and propagates.
        Safe to call twice.
        """
        if self._state != "open":
            return
        assert self._portal is not None and self._queue_cm is not None
        try:
            with CtrlC() as ctrl_c:  # a press anywhere from here on cancels what is left
                self._state = "closing"
                _uninstall(self)
                draining = self._portal.start_task_soon(self._queue.aclose, timeout)
                ctrl_c.wait(functools.partial(_finished, draining))
            draining.result()
        except BaseException as interrupt:
            self._shut_down(interrupt)
            raise
        self._shut_down(None)

    def _shut_down(self, interrupt: BaseException | None) -> None:
        """Leave the async queue's block (cancelling what is left if ``interrupt``), then
        stop the event-loop thread."""
        assert self._queue_cm is not None and self._portal_cm is not None
        try:
            if interrupt is None:
                self._queue_cm.__exit__(None, None, None)
            else:
                stop = _HardStop()
                try:
                    self._queue_cm.__exit__(_HardStop, stop, None)
                except BaseException as raised:  # the queue re-raises our marker, grouped
                    if not _only(raised, stop):
                        raise
        finally:
            self._state = "closed"
            _open_queues.discard(self)
            self._portal_cm.__exit__(None, None, None)
            self._join_worker_threads()

    def _join_worker_threads(self) -> None:
        """anyio stops an event loop's worker threads when the loop ends; wait for that,
        so no thread outlives close(). trio instead keeps idle threads in its process-wide
        cache, where they are reused (or exit after 10 s idle): those are not joined."""
        if self._backend != "asyncio":
            return
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> TaskQueue:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        elif self._state == "open":  # like the async queue: an error cancels what is left
            self._state = "closing"
            _uninstall(self)
            self._shut_down(exc)

    # -- submitting -------------------------------------------------------------------
    def submit_nowait(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        key: Hashable | None = None,
        **kwargs: Any,
    ) -> SyncTaskHandle[T]:
        """Queue ``fn(*args, **kwargs)`` now; ``QueueFull`` if there is no room."""
        self._open_portal(fn)
        submit = functools.partial(
            self._queue.submit_nowait, self._wrapper(fn), *args, key=key, **kwargs
        )
        if threading.get_ident() == self._loop_thread:  # from a hook or callback in the loop
            return self._mirror(submit())
        return anyio.from_thread.run_sync(self._submit_in_loop, submit, token=self._token)[0]

    def submit(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        key: Hashable | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> SyncTaskHandle[T]:
        """Queue ``fn(*args, **kwargs)``, blocking up to ``timeout`` seconds for room."""
        portal = self._open_portal(fn)
        wrapper = self._wrapper(fn)

        async def submit() -> tuple[SyncTaskHandle[T]]:
            job = await self._queue.submit(wrapper, *args, key=key, timeout=timeout, **kwargs)
            return (self._mirror(job),)

        return portal.call(submit)[0]

    def stats(self) -> QueueStats:
        """Depth, workers, busy workers and totals (see :meth:`corral.TaskQueue.stats`)."""
        return self._queue.stats()

    def _submit_in_loop(self, submit: Callable[[], TaskHandle[Any]]) -> tuple[SyncTaskHandle[Any]]:
        # Runs in the loop thread, in (a copy of) the caller's context, which the queue
        # copies into the job: the caller's contextvars reach the job's thread. The
        # handle travels in a tuple because the portal would try to await it.
        return (self._mirror(submit()),)

    def _open_portal(self, fn: Callable[..., Any]) -> BlockingPortal:
        _fanout.check_sync_callable(fn, "corral.sync.TaskQueue.submit")
        if self._state != "open" or self._portal is None:
            if self._state == "new":
                raise QueueClosed(
                    f"corral.sync.TaskQueue {self.name!r} is not open yet: call .open() or use "
                    "it as a `with` block"
                )
            raise QueueClosed(f"corral.sync.TaskQueue {self.name!r} is closed")
        return self._portal

    def _wrapper(self, fn: Callable[..., Any]) -> _InThread:
        wrapper = self._wrappers.get(fn)
        if wrapper is None:
            assert self._limiter is not None
            wrapper = _InThread(fn, self._limiter, self._threads)
            if isinstance(fn, types.FunctionType) and len(self._wrappers) < 4096:
                self._wrappers[fn] = wrapper
        return wrapper

    def _mirror(self, job: TaskHandle[Any]) -> SyncTaskHandle[Any]:
        """A thread-safe handle that follows ``job`` (resolved in the loop thread)."""
        handle: SyncTaskHandle[Any] = SyncTaskHandle(
            job.name, self._lock, task_id=job.id, canceller=lambda _h: self._cancel(job)
        )

        def copy(done: TaskHandle[Any]) -> None:
            error = done._exception
            if error is None:
                handle._set_result(done._result)
            else:
                handle._set_exception(error)

        job.add_done_callback(copy)  # in the loop thread, where the job is resolved
        return handle

    def _cancel(self, job: TaskHandle[Any]) -> bool:
        if threading.get_ident() == self._loop_thread:
            return job.cancel()
        if self._token is None or self._state == "closed":
            return False
        return anyio.from_thread.run_sync(job.cancel, token=self._token)


def _close_at_exit(queue: TaskQueue) -> None:
    """Drain queues still open when the interpreter exits, as it waits for non-daemon
    threads; without this the queue's loop thread would keep the process alive forever.

    The hook runs with the interpreter's thread-shutdown hooks, before the executor
    that hosts the loop thread is joined (hooks run last-registered first, and importing
    ``concurrent.futures.thread`` here registers the executor's hook before ours).
    """
    global _exit_hook_installed
    _open_queues.add(queue)
    with _lock:
        if _exit_hook_installed:
            return
        import concurrent.futures.thread  # noqa: F401  (its exit hook must come first)

        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(_close_open_queues)
        _exit_hook_installed = True


def _close_open_queues() -> None:
    for queue in list(_open_queues):
        queue.close()


def _install(queue: TaskQueue) -> None:
    global _default
    with _lock:
        if _default is not None:
            raise CorralError(
                f"cannot open corral.sync.TaskQueue {queue.name!r} with default=True: "
                f"{_default.name!r} is already the default sync queue (only one may be open)"
            )
        _default = queue


def _uninstall(queue: TaskQueue) -> None:
    global _default
    with _lock:
        if _default is queue:
            _default = None


def default_queue() -> TaskQueue:
    """The open default sync queue; :class:`corral.NoDefaultQueue` when there is none."""
    queue = _default
    if queue is None:
        raise NoDefaultQueue(
            f"corral.sync.spawn needs a default corral.sync.TaskQueue and none is open: {_HOW_TO}"
        )
    return queue


def spawn(
    fn: Callable[..., T], /, *args: Any, key: Hashable | None = None, **kwargs: Any
) -> SyncTaskHandle[T]:
    """Run ``fn(*args, **kwargs)`` on the default sync queue: the governed
    ``threading.Thread(target=fn, args=args).start()``.

    Raises ``QueueFull`` when the default queue is full and ``NoDefaultQueue`` when none
    is open.
    """
    return default_queue().submit_nowait(fn, *args, key=key, **kwargs)
