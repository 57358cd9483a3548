"""Middleware: code that wraps every task of a queue (timeouts, retries, logging, ...).

A middleware is ``async def mw(task: TaskInfo, call_next) -> object``; it may inspect
``task``, run code around ``await call_next()``, call it again (retry) or not at all,
and return or replace the result. The chain runs outermost first: with
``middleware=(log(), retry(3), timeout(5))`` each attempt gets its own 5 s budget and
the log line covers all attempts. Middleware runs inside the task's copied context.

Only queues that use a middleware pay for it: ``timeout`` opens a cancel scope per task,
the queue itself never does.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .task_info import TaskInfo

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .store.redis import RedisStore

__all__ = ["CallNext", "Middleware", "log", "rate_limit", "retry", "run_chain", "timeout"]

CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[TaskInfo, CallNext], Awaitable[Any]]

RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def run_chain(
    middleware: Sequence[Middleware], task: TaskInfo, innermost: CallNext
) -> Awaitable[Any]:
    """The awaitable of ``middleware[0]`` wrapping ... wrapping ``innermost()``."""
    last = len(middleware)

    def call(index: int) -> Awaitable[Any]:
        if index == last:
            return innermost()
        return middleware[index](task, lambda: call(index + 1))

    return call(0)


def timeout(seconds: float) -> Middleware:
    """Fail the task with ``TimeoutError`` when one attempt runs longer than ``seconds``."""
    if not seconds > 0:
        raise ValueError(f"corral.middleware.timeout: seconds must be > 0, got {seconds!r}")

    async def timeout_middleware(task: TaskInfo, call_next: CallNext) -> Any:
        with anyio.fail_after(seconds):
            return await call_next()

    return timeout_middleware


def retry(
    attempts: int = 3,
    *,
    backoff: float = 0.1,
    max_backoff: float = 30.0,
    jitter: Literal["full", "none"] = "full",
    retry_on: RetryOn = Exception,
) -> Middleware:
    """Run the task up to ``attempts`` times while it raises a retryable exception.

    The n-th retry sleeps ``min(max_backoff, backoff * 2**(n-1))`` seconds, scaled by a
    uniform random factor in [0, 1) with ``jitter="full"`` (spreads retries of many
    failing tasks apart). ``retry_on`` is an exception type, a tuple of types or a
    predicate. Cancellation and other non-``Exception`` errors are never retried. Each
    retry counts in ``corral_task_retries_total``.
    """
    if not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"corral.middleware.retry: attempts must be an int >= 1, got {attempts!r}")
    if backoff < 0 or max_backoff < 0:
        raise ValueError("corral.middleware.retry: backoff and max_backoff must be >= 0")
    if jitter not in ("full", "none"):
        raise ValueError(
            f"corral.middleware.retry: jitter must be 'full' or 'none', got {jitter!r}"
        )
    should_retry: Callable[[BaseException], bool]
    if isinstance(retry_on, (type, tuple)):
        types_ = retry_on

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, types_)
    elif callable(retry_on):
        should_retry = retry_on
    else:
        raise TypeError(
            "corral.middleware.retry: retry_on must be an exception type, a tuple of them "
            f"or a predicate, got {retry_on!r}"
        )

    async def retry_middleware(task: TaskInfo, call_next: CallNext) -> Any:
        for attempt in range(1, attempts + 1):
            try:
                return await call_next()
            except Exception as exc:
                if attempt == attempts or not should_retry(exc):
                    raise
            delay = min(max_backoff, backoff * 2 ** (attempt - 1))
            if jitter == "full":
                delay *= random.random()
            task.record_retry()
            await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    return retry_middleware


def log(logger: logging.Logger | None = None, *, level: int = logging.INFO) -> Middleware:
    """Log each task's start (DEBUG) and its outcome with duration (``level``/WARNING)."""
    target = logger if logger is not None else logging.getLogger("corral.tasks")

    async def log_middleware(task: TaskInfo, call_next: CallNext) -> Any:
        target.debug("start %s/%s id=%s", task.queue, task.name, task.id)
        started = time.perf_counter()
        try:
            result = await call_next()
        except Exception as exc:
            target.warning(
                "failed %s/%s id=%s after %.3fs: %r",
                task.queue,
                task.name,
                task.id,
                time.perf_counter() - started,
                exc,
            )
            raise
        target.log(
            level,
            "done %s/%s id=%s in %.3fs",
            task.queue,
            task.name,
            task.id,
            time.perf_counter() - started,
        )
        return result

    return log_middleware


def rate_limit(
    rate: str,
    *,
    key: Callable[[TaskInfo], Hashable] | None = None,
    store: RedisStore | None = None,
    registry: CollectorRegistry | None = None,
) -> Middleware:
    """Limit task *starts* to ``rate`` (``"20/s"``, ``"100/minute"``, ``"5/10s"``) per key.

    ``key(task)`` picks the bucket (default: the task's name, so each task function has its
    own budget); submissions are never refused, a start over the budget waits. In-process
    by default; with ``store=`` (the queue's :class:`corral.RedisStore`) the budget is
    shared by every process on that Redis server (needs ``corral[redis]``). The wait
    happens in the worker that took the task, so it holds that worker's slot: give
    throttled work its own queue when other work must not wait behind it. Throttled
    starts count in ``corral_tasks_throttled_total`` and the time they waited in
    ``corral_task_throttle_seconds_total`` (labels queue, task).
    """
    from . import _rate_limit
    from .metrics import collector_for

    spec = _rate_limit.parse_rate(rate)
    if key is not None and not callable(key):
        raise TypeError(f"corral.middleware.rate_limit: key must be callable, got {key!r}")
    limiter: _rate_limit.LocalLimiter | _rate_limit.RedisLimiter
    if store is None:
        limiter = _rate_limit.LocalLimiter(spec)
    else:
        url = getattr(store, "url", None)
        if not isinstance(url, str):
            raise TypeError(
                "corral.middleware.rate_limit: store= must be a corral.RedisStore "
                f"(a fleet-wide limit lives in Redis), got {store!r}"
            )
        limiter = _rate_limit.RedisLimiter(spec, url, prefix=f"corral:rate:{store.stream}")
    counts = _rate_limit.ThrottleCounts()
    collector_for(registry).add_source(counts)

    async def rate_limit_middleware(task: TaskInfo, call_next: CallNext) -> Any:
        bucket = _rate_limit.bucket_name(key(task) if key is not None else task.name)
        waited = await limiter.acquire(bucket)
        if waited > 0:
            counts.record(task.queue, task.name, waited)
        return await call_next()

    return rate_limit_middleware
