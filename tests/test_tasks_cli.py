"""``corral tasks``: listing, DLQ round trip, exit codes, JSON, and no tracebacks for user error."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
from corral.store import NewTask, SQLiteStore
from corral.tasks_cli import main
from prometheus_client import CollectorRegistry

fixed: set[str] = set()


@corral.task(name="cli.charge", retry=corral.Retry(2, backoff=corral.exponential(0.001, 0.001)))
async def charge(order: str) -> str:
    if order not in fixed:
        raise RuntimeError(f"card declined for {order}")
    return f"charged {order}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.tasks_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def fail_orders(db: Path, *orders: str) -> list[str]:
    async with corral.TaskQueue(
        "billing", workers=2, capacity=10, store=SQLiteStore(db), registry=CollectorRegistry()
    ) as q:
        handles = [await q.submit(charge, order) for order in orders]
        for handle in handles:
            with pytest.raises(corral.TaskDeadLettered):
                await handle
    return [h.id for h in handles]


async def drain(db: Path) -> None:
    async with corral.TaskQueue(
        "billing", workers=2, capacity=10, store=SQLiteStore(db), registry=CollectorRegistry()
    ):
        pass


def test_dead_letter_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "tasks.db"
    first, second = anyio.run(fail_orders, db, "o-1", "o-2")

    code, out, _ = run(capsys, "--db", str(db), "dlq")
    assert code == 1  # a non-empty dead-letter table is a problem found
    assert first in out and "cli.charge" in out and "2/2" in out
    assert "RuntimeError: card declined for o-1" in out

    code, out, _ = run(capsys, "--db", str(db), "show", first)
    assert code == 0
    assert 'args: ["o-1"]' in out and "traceback:" in out and "card declined" in out

    code, out, _ = run(capsys, "--db", str(db), "--json", "dlq")
    assert code == 1
    assert {r["id"] for r in json.loads(out)} == {first, second}

    fixed.add("o-1")
    code, out, _ = run(capsys, "--db", str(db), "retry", first)
    assert (code, out) == (0, "requeued 1 task(s)\n")
    code, out, _ = run(capsys, "--db", str(db), "list", "--json")
    ((pending,),) = [json.loads(out)]
    assert (pending["id"], pending["state"], pending["attempts"]) == (first, "pending", 0)

    anyio.run(drain, db)  # the repaired task now succeeds
    code, out, _ = run(capsys, "--db", str(db), "list")
    assert (code, out) == (0, "no tasks\n")

    code, out, _ = run(capsys, "--db", str(db), "stats", "--json")
    assert json.loads(out) == [
        {
            "queue": "billing",
            "pending": 0,
            "running": 0,
            "dead": 1,
            "done": 0,
            "cancelled": 0,
            "oldest_pending_at": None,
        }
    ]
    code, out, _ = run(capsys, "--db", str(db), "purge", "--dlq")
    assert (code, out) == (0, "purged 1 dead task(s)\n")
    code, out, _ = run(capsys, "--db", str(db), "dlq")
    assert (code, out) == (0, "the dead-letter table is empty\n")


def test_retry_all_and_unknown_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "tasks.db"
    ids = anyio.run(fail_orders, db, "o-3", "o-4")
    code, out, err = run(capsys, "--db", str(db), "retry", "nope", ids[0])
    assert code == 1 and "requeued 1" in out and "nope is not in the dead-letter table" in err
    code, out, _ = run(
        capsys, "--db", str(db), "--json", "retry", "--all-dlq", "--queue", "billing"
    )
    assert (code, json.loads(out)) == (0, {"requeued": [ids[1]], "not_found": []})
    code, out, _ = run(capsys, "--db", str(db), "list", "--state", "pending", "--queue", "billing")
    assert code == 0 and ids[0] in out and ids[1] in out
    code, out, _ = run(capsys, "stats", "--db", str(db))  # options after the command too
    assert code == 0 and "billing" in out and "PENDING" in out


def test_show_running_and_done_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "tasks.db"
    now = time.time()

    async def setup() -> None:
        async with SQLiteStore(db) as store:
            await store.enqueue(
                [
                    NewTask("r1", "q", "x.y", '{"args":[1],"kwargs":{"a":2}}', 3, now, now),
                    NewTask("d1", "q", "x.y", '{"args":[],"kwargs":{}}', 3, now, now, "key"),
                ]
            )
            await store.claim("q", limit=2, now=now)
            await store.complete("d1", result='{"ok":1}', now=now)

    anyio.run(setup)
    code, out, _ = run(capsys, "--db", str(db), "show", "r1")
    assert code == 0 and "state: running" in out and 'kwargs: {"a": 2}' in out
    code, out, _ = run(capsys, "--db", str(db), "show", "d1", "--json")
    record = json.loads(out)
    assert (record["state"], record["result"], record["idempotency_key"]) == (
        "done",
        {"ok": 1},
        "key",
    )
    code, out, _ = run(capsys, "--db", str(db), "list", "--state", "done")
    assert code == 0 and "d1" in out
    code, out, err = run(capsys, "--db", str(db), "show", "missing")
    assert code == 1 and "no task with id missing" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "required"),
        (["stats"], "--db PATH is required"),
        (["--db", "X"], "required: COMMAND"),
        (["--db", "X", "frobnicate"], "invalid choice"),
        (["--db", "X", "stats"], "no task database at X"),
        (["--db", "DB", "retry"], "give task ids or --all-dlq"),
        (["--db", "DB", "retry", "a", "--all-dlq"], "not both"),
        (["--db", "DB", "retry", "a", "--queue", "q"], "--queue goes with --all-dlq"),
        (["--db", "DB", "purge"], "--dlq"),
        (["--db", "DB", "list", "--state", "weird"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    db = tmp_path / "tasks.db"
    anyio.run(drain, db)
    code, out, err = run(capsys, *[str(db) if a == "DB" else a for a in args])
    assert code == 2 and message in err and "Traceback" not in err
    assert out == ""


def test_foreign_files_exit_2_and_are_not_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    code, _, err = run(capsys, "--db", str(notes), "list")
    assert code == 2 and "not a SQLite database" in err
    assert notes.read_text() == "hello"
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "--db", str(other), "stats")
    assert code == 2 and "did not create" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "corral tasks" in out


def test_runs_as_a_module(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    ids: list[Any] = anyio.run(fail_orders, db, "o-9")
    proc = cli("--db", str(db), "dlq", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["id"] == ids[0]
    proc = cli("--db", str(tmp_path / "missing.db"), "list")
    assert proc.returncode == 2 and proc.stderr.startswith("corral tasks: no task database")
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ('{"args": [1, ', "stored payload is not valid JSON"),
        ("[1, 2]", "not an object with an 'args' list"),
        ('{"args": {"a": 1}, "kwargs": {}}', "not an object with an 'args' list"),
        ('{"args": [], "kwargs": []}', "not an object with an 'args' list"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_damaged_payloads_are_reported_not_crashed_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: str, problem: str
) -> None:
    db = tmp_path / "tasks.db"
    (task_id,) = anyio.run(fail_orders, db, "A-1")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE dead_letters SET payload = ?", (payload,))
    conn.close()

    code, out, err = run(capsys, "--db", str(db), "show", task_id)
    assert code == 1 and problem in err and "Traceback" not in err
    assert f"id: {task_id}" in out and "last_error: RuntimeError: card declined" in out
    assert "args: - (unreadable)" in out and repr(payload)[:20] in out

    code, out, err = run(capsys, "--db", str(db), "--json", "show", task_id)
    data = json.loads(out)
    assert code == 1 and problem in err
    assert data["args"] is None and data["payload"] == payload and problem in data["damaged"][0]
    assert data["last_error"] == "RuntimeError: card declined for A-1"

    code, out, err = run(capsys, "--db", str(db), "dlq", "--json")
    [entry] = json.loads(out)
    assert code == 1 and entry["id"] == task_id and entry["payload"] == payload
    assert problem in err and "Traceback" not in err

    code, out, err = run(capsys, "--db", str(db), "dlq")
    assert code == 1 and task_id in out and problem in err


def test_damaged_result_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "tasks.db"
    stored = NewTask(
        id="done-1",
        queue="billing",
        name="cli.charge",
        payload='{"args": ["B-1"], "kwargs": {}}',
        max_attempts=2,
        not_before=0.0,
        created_at=0.0,
        idempotency_key="order-B-1",
    )

    async def setup() -> None:
        async with SQLiteStore(db) as store:
            await store.enqueue([stored])
            await store.claim("billing", limit=1, now=1.0)
            await store.complete("done-1", result='"charged', now=time.time())

    anyio.run(setup)
    code, out, err = run(capsys, "--db", str(db), "list", "--state", "done", "--json")
    [entry] = json.loads(out)
    assert code == 1 and entry["result"] is None and entry["result_text"] == '"charged'
    assert "stored result is not valid JSON" in err
    code, out, err = run(capsys, "--db", str(db), "show", "done-1")
    assert code == 1 and "result: '\"charged'" in out and 'args: ["B-1"]' in out
