"""``corral tasks --redis URL --stream NAME`` works like ``--db PATH``."""

from __future__ import annotations

import json
import uuid

import anyio
import pytest
import redis
from conftest_redis import RedisServer
from corral import RedisStore
from corral.store import NewTask
from corral.tasks_cli import main

NOW = 1_000_000.0


def new_task(n: int) -> NewTask:
    return NewTask(
        id=uuid.uuid4().hex,
        queue="billing",
        name="cli.charge",
        payload=json.dumps({"args": [f"order-{n}"], "kwargs": {}}),
        max_attempts=2,
        not_before=NOW,
        created_at=NOW,
    )


def seed(url: str, stream: str, *, dead: int, pending: int) -> list[str]:
    """``dead`` tasks in the dead-letter stream and ``pending`` waiting ones."""

    async def go() -> list[str]:
        async with RedisStore(url, stream=stream) as store:
            await store.enqueue([new_task(n) for n in range(dead)])
            ids = []
            for record in await store.claim("billing", limit=dead, now=NOW):
                await store.dead_letter(
                    record.id, error="RuntimeError: card declined", traceback="Traceback", now=NOW
                )
                ids.append(record.id)
            await store.enqueue([new_task(100 + n) for n in range(pending)])
            return ids

    return anyio.run(go)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dlq_round_trip(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    stream = f"cli:{uuid.uuid4().hex[:8]}"
    where = ("--redis", redis_server.url, "--stream", stream)
    dead = seed(redis_server.url, stream, dead=2, pending=1)

    code, out, _ = run(capsys, *where, "dlq")
    assert code == 1 and all(i in out for i in dead) and "card declined" in out
    code, out, _ = run(capsys, *where, "--json", "stats")
    (stats,) = json.loads(out)
    assert code == 0 and (stats["queue"], stats["pending"], stats["dead"]) == ("billing", 1, 2)
    code, out, _ = run(capsys, *where, "show", dead[0])
    assert code == 0 and "state: dead" in out and '["order-' in out
    code, out, _ = run(capsys, *where, "--json", "list", "--state", "pending")
    assert code == 0 and [r["args"] for r in json.loads(out)] == [["order-100"]]

    code, out, err = run(capsys, *where, "retry", dead[0], "nope")
    assert code == 1 and "requeued 1 task(s)" in out and "nope is not in the dead-letter" in err
    code, out, _ = run(capsys, *where, "--json", "list")
    assert {r["id"] for r in json.loads(out)} >= {dead[0]}
    code, out, _ = run(capsys, *where, "purge", "--dlq")
    assert code == 0 and "purged 1 dead task(s)" in out
    code, out, _ = run(capsys, *where, "dlq")
    assert code == 0 and "empty" in out
    code, out, err = run(capsys, *where, "show", dead[1])
    assert code == 1 and "no task with id" in err


def test_missing_stream_is_not_created(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = f"cli:absent:{uuid.uuid4().hex[:8]}"
    code, _out, err = run(capsys, "--redis", redis_server.url, "--stream", stream, "stats")
    assert code == 2 and "holds no corral task stream" in err and "Traceback" not in err
    client = redis.Redis.from_url(redis_server.url)
    assert client.exists(stream, f"{stream}:meta") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--redis", "localhost:6379", "stats"), "url must look like"),
        (("--redis", "redis://127.0.0.1:1/0", "stats"), "cannot reach Redis"),
        (("--redis", "redis://x", "--db", "x.db", "stats"), "--db PATH or --redis URL, not both"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err
