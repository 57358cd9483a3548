"""The queue entry and the per-task machinery a TaskQueue worker runs.

Everything here is on the per-task path, so it is written for speed:

- :class:`Job` is the queue entry and the submitter's handle in one object; once a job
  finishes and nobody references it (``sys.getrefcount``), the queue recycles it for a
  later submission instead of allocating a new one and feeding the garbage collector.
- :func:`call` wraps the task in a generator-based coroutine that stores the result on
  the handle and returns None, so the worker can step it with ``next(step, FINISHED)``
  without a StopIteration per task.
- :class:`Tally` holds one task name's counters and histograms as plain numbers; workers
  batch first-bucket observations in locals and :func:`flush` them.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
import types
from collections.abc import Callable, Generator, Hashable
from contextvars import Context
from typing import TYPE_CHECKING, Any

import anyio

from .handles import TaskHandle
from .metrics import Buckets
from .middleware import run_chain
from .task_info import TaskInfo

if TYPE_CHECKING:
    from .queue import TaskQueue

COROUTINE_TYPE = types.CoroutineType
new_job = object.__new__

HAS_REFCOUNT = hasattr(sys, "getrefcount")


async def released() -> None:
    """Stands in for the function of a recycled handle, so it keeps nothing alive."""


NO_CONTEXT = Context()
refcount: Callable[[object], int] = getattr(sys, "getrefcount", lambda _obj: 1 << 30)
# References to a finished job when only the worker knows it: the worker's local, its
# ``worker.job`` slot and getrefcount's own argument.
UNREFERENCED = 3
perf_counter = time.perf_counter


class Tally:
    """Counters and histograms of one task name in one queue (plain ints, no locks)."""

    __slots__ = (
        "cancelled",
        "duration",
        "error",
        "name",
        "queue",
        "rejected",
        "retries",
        "submitted",
        "success",
        "wait",
    )

    def __init__(self, queue: TaskQueue, name: str) -> None:
        self.queue = queue
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


class Worker:
    """What the queue knows about one worker: for cancellation and the busy gauge."""

    __slots__ = ("interrupted", "job", "next_job", "scope")

    def __init__(self) -> None:
        self.job: Job | None = None  # the running task (or the one just finished)
        self.next_job: Job | None = None  # the next task of the key this worker holds
        self.scope: anyio.CancelScope | None = None
        self.interrupted = False  # handle.cancel() cancelled this worker's scope, or a stop


class Job(TaskHandle[Any]):
    """A queued task and its handle in one object; recycled once nobody references it.

    Fields are written by ``TaskQueue._enqueue`` rather than ``__init__`` (see there).
    """

    __slots__ = ("args", "ctx", "fn", "info", "key", "kwargs", "t_submit", "tally")

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None  # None when empty: a call without ** is much cheaper
    key: Hashable | None
    ctx: Context
    tally: Tally
    info: TaskInfo | None
    t_submit: float


FINISHED = object()


def flush(
    tally: Tally,
    succeeded: int,
    fast_waits: int,
    wait_sum: float,
    fast_runs: int,
    run_sum: float,
) -> None:
    """Add a worker's locally kept counts (first-bucket observations) to the tally."""
    tally.success += succeeded
    tally.wait.counts[0] += fast_waits
    tally.wait.total += wait_sum
    tally.duration.counts[0] += fast_runs
    tally.duration.total += run_sum


def awaiting(value: object, job: Job) -> Generator[Any, Any, Any]:
    """What ``yield from`` needs to await ``value``: the coroutine itself or its iterator."""
    if type(value) is COROUTINE_TYPE:
        return value  # type: ignore[return-value]  # iterable inside types.coroutine
    await_ = getattr(value, "__await__", None)
    if await_ is None:
        raise TypeError(
            f"task {job.name!r} returned {type(value).__name__}, not an awaitable: TaskQueue "
            "runs async functions; use corral.sync for blocking code"
        )
    iterator: Generator[Any, Any, Any] = await_()
    return iterator


@types.coroutine
def call(job: Job) -> Generator[Any, Any, None]:
    """The task itself; its result goes straight onto the handle.

    A generator-based coroutine that returns None lets the worker step it with
    ``next(step, FINISHED)``, which finishes without raising StopIteration and without
    an ``__await__`` wrapper (measurably cheaper per task than ``coro.send``).
    """
    kwargs = job.kwargs
    coro = job.fn(*job.args) if kwargs is None else job.fn(*job.args, **kwargs)
    if type(coro) is not COROUTINE_TYPE:
        coro = awaiting(coro, job)
    job._result = yield from coro


@types.coroutine
def call_chain(job: Job) -> Generator[Any, Any, None]:
    """The task wrapped in its queue's middleware chain."""
    queue = job.tally.queue
    fn, args, kwargs = job.fn, job.args, job.kwargs or {}
    chain = run_chain(queue._middleware, queue._info(job), lambda: fn(*args, **kwargs))
    job._result = yield from awaiting(chain, job)


def task_name(fn: Callable[..., Any]) -> str:
    """The ``task`` label: the qualified name without the enclosing functions' part."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    if not isinstance(name, str):
        name = type(fn).__qualname__
    return name.rpartition("<locals>.")[2]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)
