"""corral.sync: the governed primitives for sync code (Django, Flask, scripts, CLIs).

``TaskGroup`` is structured fan-out on a bounded pool of worker threads; ``TaskQueue``
and ``spawn`` run background jobs on governed threads. Banning ``threading.Thread`` and
executors in business code always has one of these as the answer.
"""

from __future__ import annotations

from .group import TaskGroup, default_limit
from .handles import SyncTaskHandle
from .queue import TaskQueue, default_queue, spawn

__all__ = ["SyncTaskHandle", "TaskGroup", "TaskQueue", "default_limit", "default_queue", "spawn"]
