"""``corral tasks list/show`` (and ``--json``) show due times, keys and priorities."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from conftest_redis import RedisServer
from corral.store import NewTask, RedisStore, SQLiteStore, Store
from corral.tasks_cli import main

DUE = 4_102_444_800.0  # 2100-01-01T00:00:00Z: far in the future, still pending


def seed(store: Store, *, priority: int) -> None:
    async def go() -> None:
        async with store:
            await store.enqueue(
                [
                    NewTask(
                        "k-1",
                        "q",
                        "x.y",
                        '{"args":[],"kwargs":{}}',
                        3,
                        DUE,
                        DUE - 10,
                        key="acct-7",
                        priority=priority,
                    ),
                    NewTask(
                        "k-2",
                        "q",
                        "x.y",
                        '{"args":[],"kwargs":{}}',
                        3,
                        0.0,
                        DUE - 10,
                        key="acct-7",
                        priority=priority,
                    ),
                ]
            )

    anyio.run(go)


def check(where: tuple[str, ...], priority: int, capsys: pytest.CaptureFixture[str]) -> None:
    due = datetime.fromtimestamp(DUE, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main([*where, "list"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[3:8] == ["STATE", "KEY", "PRIORITY", "ATTEMPTS", "NOT_BEFORE"]
    first = next(row for row in rows if row.startswith("k-1"))
    assert first.split()[3:8] == ["pending", "acct-7", str(priority), "0/3", due]
    assert main([*where, "show", "k-1"]) == 0
    out = capsys.readouterr().out
    assert "key: acct-7\n" in out and f"priority: {priority}\n" in out
    assert f"not_before: {due}\n" in out
    assert main([*where, "list", "--json"]) == 0
    records = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["k-1"]["key"] == records["k-2"]["key"] == "acct-7"
    assert records["k-1"]["priority"] == priority and records["k-1"]["not_before"] == DUE
    assert main([*where, "show", "k-2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == "acct-7"


def test_sqlite_listing_shows_keys_priorities_and_due_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "tasks.db"
    seed(SQLiteStore(db), priority=7)
    check(("--db", str(db)), 7, capsys)


def test_redis_listing_shows_keys_and_due_times(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = f"cli:{uuid.uuid4().hex[:8]}"
    seed(RedisStore(redis_server.url, stream=stream), priority=0)
    check(("--redis", redis_server.url, "--stream", stream), 0, capsys)
