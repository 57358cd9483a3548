"""Pieces shared by the async and the sync TaskGroup: option checks, callable checks, errors.

Both groups promise the same contract (a bounded pool, the first error raised as its own
type, every error kept), so the wording of their errors lives in one place.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Sequence
from types import BuiltinFunctionType, BuiltinMethodType, CoroutineType
from typing import Any

__all__ = [
    "attach_other_errors",
    "check_async_callable",
    "check_limit",
    "check_sync_callable",
    "group_name",
    "not_awaitable_error",
    "returned_awaitable_error",
]

_MAX_NOTES = 10

# Callables that can never return an awaitable: reject them before anything runs.
_NEVER_ASYNC = (BuiltinFunctionType, BuiltinMethodType, type)


def group_name(name: str | None, kind: str) -> str:
    """The metrics label of a group: the given name, or ``kind`` for unnamed groups (one
    shared label, so unnamed groups never grow the metrics' label set)."""
    if name is None:
        return kind
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind} name must be a non-empty str, got {name!r}")
    return name


def check_limit(value: int | None, option: str, owner: str) -> int | None:
    """Validate a positive-int-or-None option (``limit``, ``max_pending``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}({option}=...) must be a positive int or None, got {value!r}")
    return value


def describe(fn: object) -> str:
    """A short, readable name for a callable in error messages."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is not None:
            return f"partial({describe(inner)})"
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module != "builtins" else str(name)


def check_async_callable(fn: Callable[..., Any], api: str) -> None:
    """Reject callables that can only be sync before they run in the event loop."""
    if not callable(fn):
        raise TypeError(f"{api} expects an async function, got {fn!r} (not callable)")
    if isinstance(_unwrap(fn), _NEVER_ASYNC):
        raise TypeError(_sync_in_async_message(fn, api))


def _unwrap(fn: object) -> object:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def not_awaitable_error(fn: object, value: object, api: str) -> TypeError:
    """The error stored on a handle whose 'async' callable returned a plain value."""
    return TypeError(
        f"{_sync_in_async_message(fn, api)} (it returned {type(value).__name__}, not an awaitable)"
    )


def _sync_in_async_message(fn: object, api: str) -> str:
    return (
        f"{api} expects an async function, but {describe(fn)} is synchronous: it would block "
        "the event loop. Run sync callables on governed threads with corral.sync.TaskGroup / "
        "corral.sync.TaskQueue, or call `await anyio.to_thread.run_sync(fn)` inside an async "
        "function"
    )


def check_sync_callable(fn: Callable[..., Any], api: str) -> None:
    """Reject async functions given to a thread-based API (they would never be awaited)."""
    if not callable(fn):
        raise TypeError(f"{api} expects a sync callable, got {fn!r} (not callable)")
    target = _unwrap(fn)
    call_method = getattr(type(target), "__call__", None)  # noqa: B004 (the method itself)
    if (
        inspect.iscoroutinefunction(target)
        or inspect.isasyncgenfunction(target)
        or (
            not isinstance(target, (types.FunctionType, types.MethodType, type))
            and inspect.iscoroutinefunction(call_method)
        )
    ):
        raise TypeError(_async_in_sync_message(fn, api))


def returned_awaitable_error(fn: object, value: object, api: str) -> TypeError:
    """The error for a sync-API callable that returned a coroutine (closed, never run)."""
    if isinstance(value, CoroutineType):
        value.close()
    return TypeError(f"{_async_in_sync_message(fn, api)} (it returned an awaitable)")


def _async_in_sync_message(fn: object, api: str) -> str:
    return (
        f"{api} runs sync callables on worker threads, but {describe(fn)} is async and would "
        "never be awaited. Use corral.TaskGroup / corral.TaskQueue / corral.spawn from async "
        "code instead"
    )


def attach_other_errors(first: BaseException, errors: Sequence[BaseException], group: str) -> None:
    """Record the errors after ``first`` as ``__notes__`` on it, so a traceback shows them."""
    others = [e for e in errors if e is not first]
    if not others:
        return
    notes: list[str] = list(getattr(first, "__notes__", None) or ())
    notes.append(
        f"corral: {len(others)} more error(s) in group {group!r} after this one "
        "(all of them are in the group's .errors):"
    )
    notes.extend(f"  {type(e).__name__}: {e}" for e in others[:_MAX_NOTES])
    if len(others) > _MAX_NOTES:
        notes.append(f"  ... and {len(others) - _MAX_NOTES} more")
    # Assigned rather than add_note(): the same code path runs on Python 3.10.
    setattr(first, "__notes__", notes)  # noqa: B010
