"""Registered tasks: the names a durable queue can persist and run again after a restart.

A durable task is stored as *a registered name plus JSON arguments*, never as a pickled
callable: the row stays readable (``corral tasks show``), safe to load and valid across
deploys as long as the name is registered. Registration happens at import time with
``@corral.task(name="emails.send")``, so a restarted process knows every name before it
replays. Everything is checked before anything is persisted.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .retry import Retry

__all__ = ["TaskSpec", "encode_payload", "lookup", "register", "spec_for", "task"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A registered task: its stable name, the function and its retry policy."""

    name: str
    fn: Callable[..., Any]
    retry: Retry | None = None
    is_async: bool = False  # checked once here, not on every submit
    timeout: float | None = None  # seconds per attempt; a stuck attempt fails with TimeoutError


_by_name: dict[str, TaskSpec] = {}
_by_fn: dict[Callable[..., Any], TaskSpec] = {}


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def register(
    fn: F, *, name: str | None = None, retry: Retry | None = None, timeout: float | None = None
) -> F:
    """Register ``fn`` under ``name`` (default: ``module.qualname``) and return it unchanged.

    ``timeout`` bounds one attempt: a stuck attempt fails with ``TimeoutError`` and goes
    through the retry policy like any other failure (so it ends in the dead-letter table).
    """
    if not callable(fn):
        raise TypeError(f"corral.task: {fn!r} is not callable")
    qualname = getattr(fn, "__qualname__", "")
    if getattr(fn, "__name__", "") == "<lambda>":
        raise TypeError(
            f"corral.task: cannot register a lambda ({_where(fn)}): durable tasks must be "
            "module-level functions so a restarted process can find them by name"
        )
    if "<locals>" in qualname or not (inspect.isfunction(fn) or inspect.isbuiltin(fn)):
        raise TypeError(
            f"corral.task: {_where(fn)} is not a module-level function: durable tasks must be "
            "importable by name so a restarted process can run them again"
        )
    task_name = name if name is not None else _where(fn)
    if not isinstance(task_name, str) or not task_name.strip():
        raise ValueError(f"corral.task: name must be a non-empty string, got {task_name!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"corral.task: retry must be a corral.Retry, got {retry!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"corral.task: timeout must be a number of seconds > 0, got {timeout!r}")
    existing = _by_name.get(task_name)
    if existing is not None and _where(existing.fn) != _where(fn):
        raise ValueError(
            f"corral.task: name {task_name!r} is already registered to {_where(existing.fn)}; "
            f"pick another name for {_where(fn)}"
        )
    if existing is not None:
        _by_fn.pop(existing.fn, None)  # the same function defined again (module reload)
    spec = TaskSpec(task_name, fn, retry, inspect.iscoroutinefunction(fn), timeout)
    _by_name[task_name] = spec
    _by_fn[fn] = spec
    return fn


def task(
    name: str | None = None, *, retry: Retry | None = None, timeout: float | None = None
) -> Callable[[F], F]:
    """Decorator: ``@corral.task(name="emails.send", retry=Retry(5), timeout=30)``."""

    def decorate(fn: F) -> F:
        return register(fn, name=name, retry=retry, timeout=timeout)

    return decorate


def lookup(name: str) -> TaskSpec | None:
    """The task registered under ``name`` (used on replay), or None."""
    return _by_name.get(name)


def spec_for(fn: Callable[..., Any]) -> TaskSpec:
    """The registration of ``fn``; TypeError naming the fix if it has none."""
    try:
        spec = _by_fn.get(fn)
    except TypeError:  # unhashable callable
        spec = None
    if spec is None:
        if getattr(fn, "__name__", "") == "<lambda>":
            raise TypeError(
                "durable queues cannot run a lambda: define a module-level function and "
                "decorate it with @corral.task(name=...)"
            )
        raise TypeError(
            f"{_where(fn)} is not a registered task: durable queues persist tasks by name, "
            f"so decorate it with @corral.task(name=...) (or call q.register(fn, name=...))"
        )
    return spec


#: Deepest nesting of lists and dicts a task argument may have: deeper data is almost
#: certainly a bug (or a cycle), and JSON decoders give up on it at some depth anyway.
MAX_DEPTH = 100
_LONG_INT_BITS = 4_000  # ints this long may exceed sys.get_int_max_str_digits()


def _check_json(value: Any, where: str) -> None:
    """Raise TypeError naming the first part of ``value`` JSON cannot carry faithfully.

    Iterative (an explicit stack), so deep or cyclic data is a TypeError, not a
    RecursionError.
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        value, where, depth = stack.pop()
        if value is None or isinstance(value, (bool, str)):
            continue
        if isinstance(value, int):
            if value.bit_length() > _LONG_INT_BITS:
                _check_digits(value, where)
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise TypeError(f"{where} is {value!r}: JSON has no NaN or infinity")
            continue
        if isinstance(value, (list, dict)) and depth >= MAX_DEPTH:
            raise TypeError(
                f"{_short(where)} is nested more than {MAX_DEPTH} levels deep (or refers to "
                "itself); "
                "durable task arguments must be plain, finite JSON data"
            )
        if isinstance(value, list):
            stack.extend(
                (item, f"{where}[{index}]", depth + 1)
                for index, item in reversed(list(enumerate(value)))
            )
            continue
        if isinstance(value, dict):
            children: list[tuple[Any, str, int]] = []
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"{where} has key {key!r} of type {type(key).__name__}: JSON object "
                        "keys must be strings"
                    )
                children.append((item, f"{where}[{key!r}]", depth + 1))
            stack.extend(reversed(children))
            continue
        hint = " (use a list: JSON has no tuples)" if isinstance(value, tuple) else ""
        raise TypeError(
            f"{where} is a {type(value).__name__}, which is not JSON-serialisable{hint}; "
            "durable tasks take JSON arguments only (str, int, float, bool, None, list, dict)"
        )


def _short(where: str, width: int = 80) -> str:
    return where if len(where) <= width else f"{where[: width - 5]}[...]"


def _check_digits(value: int, where: str) -> None:
    try:
        str(value)
    except ValueError:  # beyond sys.get_int_max_str_digits(): no JSON decoder reads it back
        raise TypeError(
            f"{where} is an int of about {int(value.bit_length() * 0.30103)} digits, more "
            "than Python converts to text (sys.get_int_max_str_digits()); pass it as a str"
        ) from None


_FLAT = frozenset((str, bool, type(None)))


def _needs_walk(value: Any) -> bool:
    """False for the common flat arguments (short ints, str, bool, None): no deep walk."""
    kind = type(value)
    if kind is int:
        return bool(value.bit_length() > _LONG_INT_BITS)
    return kind not in _FLAT


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_payload(
    spec: TaskSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> str:
    """Validate and encode arguments as the stored JSON text, or raise TypeError.

    ``headers`` (propagation metadata such as a W3C ``traceparent``) is stored beside the
    arguments only when given, so untraced payloads stay exactly as they were."""
    for index, value in enumerate(args):
        if _needs_walk(value):
            _check_json(value, f"task {spec.name!r}: argument {index}")
    for key, value in kwargs.items():
        if _needs_walk(value):
            _check_json(value, f"task {spec.name!r}: keyword argument {key!r}")
    try:
        if headers:
            return _encode({"args": args, "kwargs": kwargs, "headers": dict(headers)})
        return _encode({"args": args, "kwargs": kwargs})
    except (ValueError, RecursionError) as exc:  # what the walk above cannot foresee
        raise TypeError(f"task {spec.name!r}: arguments cannot be stored as JSON: {exc}") from None
