"""Observer hooks: custom telemetry on a TaskQueue's lifecycle events.

Subclass :class:`Observer` and override only what you need; the queue calls only the
methods a subclass overrides (or that a duck-typed observer defines), so unused hooks
cost nothing per task. Hooks run synchronously in the event loop thread: keep them
cheap. An observer that raises is logged (logger ``corral.queue``) and never breaks
the queue or the task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .task_info import TaskInfo

__all__ = ["HOOK_NAMES", "Observer", "bind_hooks", "call_hooks"]

_log = logging.getLogger("corral.queue")

HOOK_NAMES = ("on_submit", "on_start", "on_complete", "on_reject", "on_slow_submit")


class Observer:
    """Base class for queue observers; every hook is a no-op until overridden."""

    #: ``on_slow_submit`` fires when ``await submit()`` waited longer than this (seconds).
    slow_submit_threshold: float = 1.0

    def on_submit(self, task: TaskInfo) -> None:
        """The task was accepted (queued)."""

    def on_start(self, task: TaskInfo) -> None:
        """A worker started the task."""

    def on_complete(self, task: TaskInfo, outcome: str, error: BaseException | None) -> None:
        """The task finished; ``outcome`` is ``success``, ``error`` or ``cancelled``."""

    def on_reject(self, queue: str, task: str, error: Exception) -> None:
        """A submission was refused (``QueueFull`` or ``QueueClosed``)."""

    def on_slow_submit(self, task: TaskInfo, waited: float) -> None:
        """``await submit()`` waited ``waited`` seconds for room (above the threshold)."""


def bind_hooks(observers: Sequence[object]) -> dict[str, list[Callable[..., Any]]]:
    """For each hook name, the bound methods that observers actually implement."""
    bound: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOK_NAMES}
    for observer in observers:
        found = False
        for name in HOOK_NAMES:
            method = getattr(observer, name, None)
            if method is None:
                continue
            found = True
            if getattr(type(observer), name, None) is getattr(Observer, name):
                continue  # inherited no-op
            if not callable(method):
                raise TypeError(f"observer {observer!r}: {name} is not callable")
            bound[name].append(method)
        if not found:
            raise TypeError(
                f"observer {observer!r} defines none of {', '.join(HOOK_NAMES)} "
                "(subclass corral.Observer)"
            )
    return bound


def call_hooks(hooks: Sequence[Callable[..., Any]], *args: Any) -> None:
    """Call every hook; a raising hook is logged, the others still run."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            _log.exception("observer hook %r raised; ignored", hook)
