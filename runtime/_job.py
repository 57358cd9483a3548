"""The queue entry and the per-task machinery a TaskQueue worker runs.

Everything here is on the per-task path, so it is written for speed:

- :class:`Job` is the queue entry and the submitter's handle in one object (an
  :class:`corral._stepper.Entry`): one allocation per submission. Entries are never
  reused: whether the submitter still holds a handle is not something the runtime can
  know soundly (reference counts differ between interpreter versions).
- :func:`call_chain` wraps the task in its queue's middleware; without middleware the
  worker runs :func:`corral._stepper.call`.
- :class:`Tally` holds one task name's counters and histograms as plain numbers; workers
  batch first-bucket observations in locals and :func:`flush` them.
"""

from __future__ import annotations

import functools
import inspect
import time
import types
from collections.abc import Callable, Generator, Hashable
from typing import TYPE_CHECKING, Any

import anyio

from ._stepper import Entry, awaiting
from .metrics import Buckets
from .middleware import run_chain

if TYPE_CHECKING:
    from .queue import TaskQueue

new_job = object.__new__
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


class Job(Entry):
    """A queued task and its handle in one object.

    Fields are written by ``TaskQueue._enqueue`` rather than ``__init__`` (see there).
    """

    __slots__ = ("key", "t_submit", "tally")

    key: Hashable | None
    tally: Tally
    t_submit: float

    def not_awaitable(self, value: object) -> TypeError:
        return TypeError(
            f"task {self.name!r} returned {type(value).__name__}, not an awaitable: TaskQueue "
            "runs async functions; use corral.sync for blocking code"
        )


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
