"""Shared helpers for the store tests (SQLite, Redis and the contract suite)."""

from __future__ import annotations

import uuid

from corral.store import NewTask

NOW = 1_000_000.0


def new_task(
    queue: str = "q",
    *,
    key: str | None = None,
    not_before: float = NOW,
    max_attempts: int = 3,
    args: str = "[1]",
    order_key: str | None = None,
    priority: int = 0,
) -> NewTask:
    """A task record as a submit would build it, with a fresh id."""
    return NewTask(
        id=uuid.uuid4().hex,
        queue=queue,
        name="jobs.echo",
        payload=f'{{"args":{args},"kwargs":{{}}}}',
        max_attempts=max_attempts,
        not_before=not_before,
        created_at=NOW,
        idempotency_key=key,
        key=order_key,
        priority=priority,
    )
