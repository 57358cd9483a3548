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

__all__ = [
    "EnqueueTicket",
    "Enqueued",
    "NewTask",
    "QueueStats",
    "RecoveryReport",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreMetrics",
    "TaskDeadLettered",
    "TaskRecord",
    "TaskState",
]
