"""A TaskHandle that threads can wait on: ``result(timeout=)`` blocks the calling thread.

The async handle is resolved and observed on one event loop; here the worker thread that
resolves the handle and the thread that waits for it differ, so resolving and adding
done-callbacks happen under a lock (shared by all handles of one owner, so it costs a
reference, not a lock, per task).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ..handles import TaskHandle

__all__ = ["SyncTaskHandle"]

T = TypeVar("T")


class SyncTaskHandle(TaskHandle[T]):
    """Handle of a task run by ``corral.sync``: thread-safe, with blocking waits.

    ``result(timeout=None)`` waits for the task (``TimeoutError`` when it is still running
    after ``timeout`` seconds; the task goes on), then returns its value or raises its
    exception; a cancelled task raises :class:`corral.TaskCancelled`.
    """

    __slots__ = ("_lock",)

    def __init__(
        self,
        name: str,
        lock: threading.Lock,
        *,
        task_id: str | None = None,
        canceller: Callable[[TaskHandle[T]], bool] | None = None,
    ) -> None:
        super().__init__(name, task_id=task_id, canceller=canceller)
        self._lock = lock

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task is done; False if ``timeout`` seconds passed first."""
        if self._state:
            return True
        event = threading.Event()
        self.add_done_callback(lambda _h: event.set())
        return event.wait(timeout)

    def result(self, timeout: float | None = None) -> T:
        """Wait up to ``timeout`` seconds (None: forever) and return the task's result."""
        self._wait_or_raise(timeout)
        return super().result()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait up to ``timeout`` seconds and return the task's exception, or None."""
        self._wait_or_raise(timeout)
        return super().exception()

    def _wait_or_raise(self, timeout: float | None) -> None:
        if not self.wait(timeout):
            raise TimeoutError(
                f"task {self.name!r} (id {self.id}) is still running after {timeout} s"
            )

    def add_done_callback(self, callback: Callable[[TaskHandle[T]], object]) -> None:
        with self._lock:
            if not self._state:
                if self._callbacks is None:
                    self._callbacks = [callback]
                else:
                    self._callbacks.append(callback)
                return
        callback(self)

    def _set_result(self, value: T) -> bool:
        with self._lock:
            if self._state:
                return False
            self._result = value
            callbacks = self._mark_done()
        if callbacks:
            for callback in callbacks:
                callback(self)
        return True

    def _set_exception(self, exc: BaseException) -> bool:
        with self._lock:
            if self._state:
                return False
            self._exception = exc
            callbacks = self._mark_done()
        if callbacks:
            for callback in callbacks:
                callback(self)
        return True

    def _mark_done(self) -> list[Callable[[TaskHandle[T]], object]] | None:
        self._state = 1
        callbacks, self._callbacks = self._callbacks, None
        return callbacks

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError(
            f"task {self.name!r} runs on a corral.sync thread: call handle.result(timeout=...) "
            "from sync code, or submit async work with corral.TaskQueue / corral.spawn"
        )
