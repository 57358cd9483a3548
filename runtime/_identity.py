"""``corral.current_task_info()``: which submitted task is running right now.

A TaskQueue or TaskGroup worker runs many submitted tasks one after the other on *one*
asyncio/trio task (no task per submission: that is where the speed comes from). So
``asyncio.current_task()`` and ``trio.lowlevel.current_task()`` name the worker, not the
job, and anything keyed by them (SQLAlchemy's ``async_scoped_session(scopefunc=
asyncio.current_task)``, per-task caches) would be shared by every job of that worker.

The supported per-job identity is :func:`current_task_info`: each worker registers its
own task id while it lives, and the lookup asks the worker which entry it is running.
Nothing is paid per job; the cost is one dictionary lookup when someone asks.
"""

from __future__ import annotations

from collections.abc import Callable

from anyio import get_current_task

from .task_info import TaskInfo

__all__ = ["current_task_info", "register", "unregister"]

# anyio task id of a live worker -> what that worker is running now
_running: dict[int, Callable[[], TaskInfo | None]] = {}


def register(running: Callable[[], TaskInfo | None]) -> int:
    """Called by a worker on its own task; returns the key to ``unregister``."""
    task_id = get_current_task().id
    _running[task_id] = running
    return task_id


def unregister(task_id: int) -> None:
    _running.pop(task_id, None)


def current_task_info() -> TaskInfo | None:
    """The :class:`corral.TaskInfo` of the queue or group task running this code.

    Unique per submitted task (use it, or its ``id``, as the key of per-task state: a
    ``scopefunc`` for scoped sessions, a per-task cache); ``None`` outside a corral task
    or in a task that the job started itself. The same object is returned for the whole
    life of one job, and it is never handed to another job.
    """
    try:
        task_id = get_current_task().id
    except Exception:  # no event loop running in this thread
        return None
    running = _running.get(task_id)
    return None if running is None else running()
