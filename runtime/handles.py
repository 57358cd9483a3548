"""The handle returned for every submitted task, shared by TaskQueue, TaskGroup and corral.sync.

A handle is deliberately small (a few slots, no event until someone waits) because one
is created per task on the hot path. Completion is signalled through done-callbacks,
which lets async waiters (an anyio Event) and sync waiters (a threading Event, in
``corral.sync``) observe the same handle.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import anyio

from .errors import TaskCancelled, TaskNotDone

__all__ = ["TaskHandle"]

T = TypeVar("T")

_log = logging.getLogger("corral.handles")
_ids = itertools.count(1)
_PENDING, _DONE = 0, 1


class TaskHandle(Generic[T]):
    """Result of one submitted task: awaitable, inspectable and cancellable.

    ``await handle`` returns the task's result or raises its exception; a task that was
    cancelled (by ``cancel()``, a queue shutdown or a failing group) raises
    :class:`corral.TaskCancelled`. Awaiting never hangs after the owner has shut down,
    because owners resolve every handle they accepted.
    """

    __slots__ = ("_callbacks", "_canceller", "_exception", "_id", "_result", "_state", "name")

    def __init__(
        self,
        name: str,
        *,
        task_id: str | None = None,
        canceller: Callable[[TaskHandle[T]], bool] | None = None,
    ) -> None:
        self._id: str | None = task_id
        self.name = name
        self._state = _PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[TaskHandle[T]], object]] | None = None
        self._canceller = canceller

    @property
    def id(self) -> str:
        """Unique id of the task in this process (or the owner's id, e.g. a durable store's).

        Assigned on first use, so handles nobody inspects never pay for formatting one.
        """
        task_id = self._id
        if task_id is None:
            task_id = self._id = str(next(_ids))
        return task_id

    @id.setter
    def id(self, value: str) -> None:
        self._id = value

    def __repr__(self) -> str:
        if self._state == _PENDING:
            state = "pending"
        elif self.cancelled():
            state = "cancelled"
        elif self._exception is not None:
            state = f"failed({type(self._exception).__name__})"
        else:
            state = "done"
        return f"<TaskHandle {self.name!r} id={self.id} {state}>"

    # -- inspection -------------------------------------------------------------------
    def done(self) -> bool:
        """True once the task has a result, an exception or was cancelled."""
        return self._state == _DONE

    def cancelled(self) -> bool:
        return self._state == _DONE and isinstance(self._exception, TaskCancelled)

    def result(self) -> T:
        """The task's return value; re-raises its exception; TaskNotDone while pending."""
        if self._state != _DONE:
            raise TaskNotDone(f"task {self.name!r} (id {self.id}) has not finished yet")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        """The task's exception (a TaskCancelled if it was cancelled), or None."""
        if self._state != _DONE:
            raise TaskNotDone(f"task {self.name!r} (id {self.id}) has not finished yet")
        return self._exception

    # -- control ----------------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask the owner to cancel the task; True if the request took effect."""
        if self._state == _DONE:
            return False
        if self._canceller is None:
            return self._set_exception(TaskCancelled(f"task {self.name!r} was cancelled"))
        return self._canceller(self)

    def add_done_callback(self, callback: Callable[[TaskHandle[T]], object]) -> None:
        """Call ``callback(handle)`` once the task finishes (at once if it already has)."""
        if self._state == _DONE:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def __await__(self) -> Generator[Any, None, T]:
        if self._state != _DONE:
            event = anyio.Event()
            self.add_done_callback(lambda _h: event.set())
            yield from event.wait().__await__()
        return self.result()

    # -- owner side -------------------------------------------------------------------
    def _set_result(self, value: T) -> bool:
        if self._state == _DONE:
            return False
        self._result = value
        self._finish()
        return True

    def _set_exception(self, exc: BaseException) -> bool:
        if self._state == _DONE:
            return False
        self._exception = exc
        self._finish()
        return True

    def _finish(self) -> None:
        self._state = _DONE
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:
                    # The owner resolving the handle (a queue worker) must survive a bad
                    # callback, and the other callbacks must still run.
                    _log.exception("done callback %r of %r raised; ignored", callback, self)
