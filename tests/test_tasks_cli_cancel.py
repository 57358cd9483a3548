"""``corral tasks cancel`` and id prefixes in every command: exit codes, messages, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from corral.store import NewTask, RedisStore, SQLiteStore, Store
from corral.tasks_cli import main

NOW = 1_000_000.0


def task(task_id: str, *, max_attempts: int = 3) -> NewTask:
    return NewTask(
        id=task_id,
        queue="billing",
        name="cli.charge",
        payload='{"args":["o-1"],"kwargs":{}}',
        max_attempts=max_attempts,
        not_before=NOW,
        created_at=NOW,
    )


async def seed(store: Store) -> None:
    """abc111 pending, abc222 pending, def333 running, fed444 dead."""
    async with store:
        await store.enqueue([task("fed444", max_attempts=1)])
        await store.claim("billing", limit=1, now=NOW)
        await store.dead_letter("fed444", error="E: declined", traceback="", now=NOW)
        await store.enqueue([task("def333")])
        await store.claim("billing", limit=1, now=NOW)
        await store.enqueue([task("abc111"), task("abc222")])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(params=["sqlite", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        stream = f"cli-cancel:{tmp_path.name}"
        anyio.run(seed, RedisStore(url, stream=stream, consumer="seed"))
        return ["--redis", url, "--stream", stream]
    db = tmp_path / "tasks.db"
    anyio.run(seed, SQLiteStore(db))
    return ["--db", str(db)]


def test_cancel_by_prefix_pending_running_finished_and_unknown(
    where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *where, "cancel", "abc1")
    assert (code, out, err) == (0, "cancelled abc111 (it had not started)\n", "")
    code, out, err = run(capsys, *where, "cancel", "def")
    assert code == 0 and err == ""
    assert out.startswith("cancelling def333: it is running;")
    code, out, err = run(capsys, *where, "cancel", "abc111", "fed4")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "corral tasks: abc111 has already finished (cancelled): not cancelled",
        "corral tasks: fed444 has already finished (dead): not cancelled",
    ]
    code, out, err = run(capsys, *where, "cancel", "zzz")
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("corral tasks: no task with id zzz in ")
    code, out, _ = run(capsys, *where, "show", "abc1")
    assert code == 0 and "id: abc111\n" in out and "state: cancelled\n" in out
    code, out, _ = run(capsys, *where, "list", "--state", "cancelled", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["abc111"]
    code, out, _ = run(capsys, *where, "stats", "--json")
    (stats,) = json.loads(out)
    assert (stats["pending"], stats["running"], stats["cancelled"]) == (1, 1, 1)


def test_an_ambiguous_prefix_exits_2_listing_the_matches(
    where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("cancel", "show", "retry"):
        code, out, err = run(capsys, *where, command, "abc")
        assert code == 2 and out == "", command
        assert err == (
            "corral tasks: id prefix 'abc' is ambiguous: it matches abc111, abc222; "
            "give more characters\n"
        )
    code, _, err = run(capsys, *where, "cancel", "")
    assert code == 2 and err == "corral tasks: a task id must not be empty\n"
    code, out, _ = run(capsys, *where, "cancel", "abc2", "--json")  # nothing was changed above
    assert code == 0 and json.loads(out)["cancelled"] == ["abc222"]


def test_retry_and_show_take_prefixes(where: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *where, "show", "fed")
    assert code == 0 and "state: dead\n" in out
    code, out, err = run(capsys, *where, "retry", "fed", "nope")
    assert code == 1 and out == "requeued 1 task(s)\n"
    assert err == "corral tasks: nope is not in the dead-letter table\n"
    code, out, err = run(capsys, *where, "show", "nope")
    assert code == 1 and err.startswith("corral tasks: no task with id nope in ")


def test_cancel_json_names_every_outcome(
    where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *where, "--json", "cancel", "abc1", "def3", "fed4", "zz")
    assert code == 1
    assert json.loads(out) == {
        "cancelled": ["abc111"],
        "cancelling": ["def333"],
        "finished": {"fed444": "dead"},
        "not_found": ["zz"],
    }
