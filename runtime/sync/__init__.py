"""corral.sync: the governed primitives for sync code (Django, Flask, scripts, CLIs).

``TaskGroup`` is structured fan-out on a bounded pool of worker threads; banning
``threading.Thread`` and executors in business code always has this answer.
"""

from __future__ import annotations

from .group import TaskGroup, default_limit
from .handles import SyncTaskHandle

__all__ = ["SyncTaskHandle", "TaskGroup", "default_limit"]
