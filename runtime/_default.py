"""The process's default queue and ``corral.spawn``, the drop-in for ``asyncio.create_task``.

A service opens one queue with ``default=True`` in its lifespan; ``corral.spawn`` then
submits to it from anywhere in that event loop, which is what the linter's hints and
``corral fix`` put in place of ``asyncio.create_task(fn(*args))``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CorralError, NoDefaultQueue

if TYPE_CHECKING:
    from .handles import TaskHandle
    from .queue import TaskQueue

__all__ = ["default_queue", "spawn"]

T = TypeVar("T")

_lock = threading.Lock()
_default: TaskQueue | None = None
_default_thread: int | None = None

_HOW_TO = (
    'open one in your service\'s lifespan: async with corral.TaskQueue("background", '
    "workers=8, capacity=1000, default=True): ..."
)


def install(queue: TaskQueue) -> None:
    """Make ``queue`` the process default (called when a ``default=True`` queue opens)."""
    global _default, _default_thread
    with _lock:
        if _default is not None:
            raise CorralError(
                f"cannot open TaskQueue {queue.name!r} with default=True: queue "
                f"{_default.name!r} is already the default queue (only one may be open)"
            )
        _default = queue
        _default_thread = threading.get_ident()


def uninstall(queue: TaskQueue) -> None:
    """Forget ``queue`` as the default (called when it closes)."""
    global _default, _default_thread
    with _lock:
        if _default is queue:
            _default = None
            _default_thread = None


def default_queue() -> TaskQueue:
    """The open default queue; raises :class:`corral.NoDefaultQueue` when there is none."""
    queue = _default
    if queue is None:
        raise NoDefaultQueue(f"corral.spawn needs a default TaskQueue and none is open: {_HOW_TO}")
    if _default_thread != threading.get_ident():
        raise NoDefaultQueue(
            f"the default TaskQueue {queue.name!r} runs in another thread's event loop; "
            "from sync code use corral.sync.spawn"
        )
    return queue


def spawn(
    fn: Callable[..., Coroutine[Any, Any, T]],
    /,
    *args: Any,
    key: Hashable | None = None,
    **kwargs: Any,
) -> TaskHandle[T]:
    """Run ``fn(*args, **kwargs)`` on the default queue; the governed ``asyncio.create_task``.

    Raises ``QueueFull`` when the default queue is full and ``NoDefaultQueue`` when none
    is open. Tasks with the same ``key`` run one at a time in submission order.
    """
    return default_queue().submit_nowait(fn, *args, key=key, **kwargs)
