"""Run a coroutine inside a copied ``contextvars.Context`` without a task of its own.

asyncio runs each step of a task in the task's context, and trio likewise; a worker that
executes many submitted coroutines in turn would therefore run them all in *its*
context. To give each task its submitter's contextvars (request ids, Sentry scopes, ...)
without paying for a task per submission, the worker steps the coroutine itself and runs
every step inside the submitter's context, passing whatever the coroutine yields to the
event loop unchanged. This is what ``asyncio.Task.__step`` does with ``context.run``.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from contextvars import Context
from typing import Any

__all__ = ["step_in_context"]


@types.coroutine
def step_in_context(
    context: Context, coro: Generator[Any, Any, Any], first: Any
) -> Generator[Any, Any, Any]:
    """Finish ``coro`` (an ``__await__`` iterator that already yielded ``first``) with every
    step run in ``context``."""
    yielded = first
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation and friends go into the coroutine
            try:
                yielded = context.run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = context.run(coro.send, sent)
            except StopIteration as stop:
                return stop.value
