"""Shared helpers for the store tests (SQLite, Redis and the contract suite)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corral.store import NewTask, RedisStore, SQLiteStore, Store

NOW = 1_000_000.0


def new_task(
    queue: str = "q",
    *,
    key: str | None = None,
    not_before: float = NOW,
    max_attempts: int = 3,
    args: str = "[1]",
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
    )


StoreFactory = Callable[..., Store]


def store_factory(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> StoreFactory:
    """For a fixture parametrised over "sqlite" and "redis": opens (and, called again,
    reopens) one durable storage, a SQLite file or a Redis stream of the test's own."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        stream = f"{name}:{uuid.uuid4().hex[:12]}"

        def redis_store(**options: Any) -> Store:
            return RedisStore(url, stream=stream, **options)

        return redis_store

    def sqlite_store(**options: Any) -> Store:
        return SQLiteStore(tmp_path / "tasks.db", **options)

    return sqlite_store
