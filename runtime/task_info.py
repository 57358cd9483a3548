"""What middleware, observers and error hooks learn about a task.

A :class:`TaskInfo` is built only when something asks for it (middleware, observers,
``on_error`` hooks, Sentry), so queues without those pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .handles import TaskHandle

__all__ = ["TaskInfo"]


class TaskInfo:
    """One submitted task as seen from middleware and hooks.

    ``attempt`` starts at 1 and is raised by :func:`corral.middleware.retry` before each
    retry; ``queue`` and ``name`` are the metric labels; ``handle`` is the submitter's
    handle (read-only use: middleware should not resolve it). ``headers`` is None for an
    in-memory task; for an attempt of a durable task on a traced queue it holds the
    propagation headers stored with the task at submit (W3C ``traceparent`` and
    ``tracestate``; empty when it was submitted untraced).
    """

    __slots__ = (
        "_retried",
        "args",
        "attempt",
        "handle",
        "headers",
        "key",
        "kwargs",
        "name",
        "queue",
    )

    def __init__(
        self,
        queue: str,
        name: str,
        handle: TaskHandle[Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        key: Hashable | None,
        retried: Any = None,
    ) -> None:
        self.queue = queue
        self.name = name
        self.handle = handle
        self.args = args
        self.kwargs = kwargs
        self.key = key
        self.attempt = 1
        self.headers: Mapping[str, str] | None = None
        self._retried = retried  # the owner's retry counter hook (see record_retry)

    @property
    def id(self) -> str:
        return self.handle.id

    def record_retry(self) -> None:
        """Count one retry of this task (``corral_task_retries_total``) and bump ``attempt``."""
        self.attempt += 1
        if self._retried is not None:
            self._retried()

    def __repr__(self) -> str:
        key = "" if self.key is None else f" key={self.key!r}"
        return f"<TaskInfo {self.queue}/{self.name} id={self.id} attempt={self.attempt}{key}>"
