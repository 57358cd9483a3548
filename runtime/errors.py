"""Exceptions raised by the governed runtime.

They all derive from :class:`CorralError` so a service can catch the runtime's
signals in one place, and each maps to one operational decision (shed load,
stop submitting, give up on a result).
"""

from __future__ import annotations

__all__ = [
    "CorralError",
    "NoDefaultQueue",
    "QueueClosed",
    "QueueFull",
    "RawConcurrencyError",
    "TaskCancelled",
    "TaskNotDone",
]


class CorralError(Exception):
    """Base class of every error the runtime raises on its own behalf."""


class QueueFull(CorralError):
    """The queue is at capacity: the caller should shed load (HTTP 429/503) or retry later."""


class QueueClosed(CorralError):
    """The queue is closing or closed and accepts no new work."""


class TaskCancelled(CorralError):
    """The task was cancelled before it produced a result (shutdown, ``cancel()``, group error).

    This is an ordinary ``Exception`` on purpose: it is a *result* stored on a handle,
    not the backend's cancellation signal, so awaiting a cancelled handle never
    cancels the awaiting task.
    """


class TaskNotDone(CorralError):
    """``result()`` or ``exception()`` was called on a handle that has not finished yet."""


class NoDefaultQueue(CorralError):
    """``corral.spawn`` was called while no default queue is open."""


class RawConcurrencyError(CorralError):
    """A guard in ``raise`` mode refused a task, thread, executor or process started
    outside corral. The message names the call site and the governed replacement;
    ``spawn`` holds the same as data (a :class:`corral.guard.RawSpawn`)."""

    def __init__(self, message: str, *, spawn: object = None) -> None:
        super().__init__(message)
        self.spawn = spawn
