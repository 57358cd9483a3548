"""Durable task stores: where ``TaskQueue(..., store=...)`` keeps tasks across restarts."""

from __future__ import annotations

from .base import (
    Enqueued,
    EnqueueTicket,
    NewTask,
    QueueStats,
    RecoveryReport,
    Store,
    StoreCorrupt,
    StoreError,
    StoreMetrics,
    TaskDeadLettered,
    TaskRecord,
    TaskState,
)
from .redis import RedisStore
from .sqlite import SQLiteStore

__all__ = [
    "EnqueueTicket",
    "Enqueued",
    "NewTask",
    "QueueStats",
    "RecoveryReport",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreMetrics",
    "TaskDeadLettered",
    "TaskRecord",
    "TaskState",
]
