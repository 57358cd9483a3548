"""How TaskQueue and TaskGroup workers run a submitted call: one primitive for both.

A worker runs many submitted calls on its own asyncio/trio task instead of one task per
call (that is where the speed comes from). Three rules make that as safe as a task each:

- **Context.** Every entry carries the snapshot ``copy_context()`` took when it was
  submitted, and runs in exactly that snapshot: every step of its coroutine goes
  through ``context.run`` (as ``asyncio.Task`` does). Snapshots are never shared or
  compared; equality of contexts compares user values, which is never identity.
- **Stepping.** :func:`call` wraps the call in a generator-based coroutine that stores
  the result on the entry and returns None, so the first step is
  ``ctx.run(next, step, FINISHED)``: a call that finishes without suspending costs no
  StopIteration and no extra coroutine. One that suspends is finished by :func:`resume`.
- **Fairness.** Calls that finish without suspending run back to back; a worker gives
  the event loop back once it has run for :data:`SLICE` seconds since it last
  suspended (trio and asyncio yield by time the same way), so with ``n`` workers no
  other task waits much more than ``n * SLICE`` plus one call's duration.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from contextvars import Context
from typing import Any, Final

from anyio.lowlevel import checkpoint

from .handles import TaskHandle
from .task_info import TaskInfo

__all__ = ["FINISHED", "SLICE", "Entry", "call", "checkpoint", "resume"]

COROUTINE_TYPE = types.CoroutineType

#: What ``next(step, FINISHED)`` returns when the call finished without suspending.
FINISHED: Final = object()

#: Longest a worker runs calls back to back before it gives the event loop back (s).
SLICE: Final = 0.002


class Entry(TaskHandle[Any]):
    """A submitted call and its handle in one object: one allocation per submission."""

    __slots__ = ("args", "ctx", "fn", "info", "kwargs")

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None  # None when empty: a call without ** is much cheaper
    ctx: Context  # this entry's own snapshot of the submitter's context
    info: TaskInfo | None  # built on first use (hooks, middleware, current_task_info)

    def not_awaitable(self, value: object) -> TypeError:
        """The error for a call that returned something that cannot be awaited."""
        return TypeError(f"task {self.name!r} returned {type(value).__name__}, not an awaitable")


def awaiting(value: object, entry: Entry) -> Generator[Any, Any, Any]:
    """What ``yield from`` needs to await ``value``: the coroutine itself or its iterator."""
    if type(value) is COROUTINE_TYPE:
        return value  # type: ignore[return-value]  # iterable inside types.coroutine
    await_ = getattr(value, "__await__", None)
    if await_ is None:
        raise entry.not_awaitable(value)
    iterator: Generator[Any, Any, Any] = await_()
    return iterator


@types.coroutine
def call(entry: Entry) -> Generator[Any, Any, None]:
    """The call itself; its result goes straight onto the entry (``_result``)."""
    kwargs = entry.kwargs
    coro = entry.fn(*entry.args) if kwargs is None else entry.fn(*entry.args, **kwargs)
    if type(coro) is not COROUTINE_TYPE:
        coro = awaiting(coro, entry)
    entry._result = yield from coro


@types.coroutine
def resume(
    context: Context, step: Generator[Any, Any, Any], first: Any
) -> Generator[Any, Any, Any]:
    """Finish ``step`` (which already yielded ``first``) with every step run in ``context``,
    passing what it yields to the event loop unchanged."""
    yielded = first
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            step.close()
            raise
        except BaseException as exc:  # cancellation and friends go into the coroutine
            try:
                yielded = context.run(step.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = context.run(step.send, sent)
            except StopIteration as stop:
                return stop.value
