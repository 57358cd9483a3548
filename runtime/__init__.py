"""corral: governed concurrency primitives on anyio.

Importing ``corral`` never imports the linter (libcst, flake8, yaml): services that only
use the runtime do not pay for it.
"""

from __future__ import annotations

# -- TaskQueue -------------------------------------------------------------------------
from . import metrics, middleware, sync
from ._default import default_queue, spawn
from .durable import DurableHandle
from .errors import (
    CorralError,
    NoDefaultQueue,
    QueueClosed,
    QueueFull,
    TaskCancelled,
    TaskNotDone,
)
from .group import TaskGroup  # TaskGroup and the sync facade (corral.sync)
from .handles import TaskHandle
from .observers import Observer
from .queue import QueueStats, TaskQueue
from .registry import task
from .retry import Retry, exponential
from .store import SQLiteStore, StoreCorrupt, StoreError, TaskDeadLettered
from .store.redis import RedisStore  # Redis Streams store; imports redis only when opened
from .task_info import TaskInfo

__version__ = "0.1.0"

__all__ = [
    "CorralError",
    "DurableHandle",
    "NoDefaultQueue",
    "Observer",
    "QueueClosed",
    "QueueFull",
    "QueueStats",
    "RedisStore",
    "Retry",
    "SQLiteStore",
    "StoreCorrupt",
    "StoreError",
    "TaskCancelled",
    "TaskDeadLettered",
    "TaskGroup",
    "TaskHandle",
    "TaskInfo",
    "TaskNotDone",
    "TaskQueue",
    "__version__",
    "default_queue",
    "exponential",
    "metrics",
    "middleware",
    "spawn",
    "sync",
    "task",
]
