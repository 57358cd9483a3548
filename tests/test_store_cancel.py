"""Cancel by id in the Store contract, on both backends (real SQLite file, real redis-server).

pending (due, delayed, waiting for a retry) -> cancelled at once; running -> a flag the
running process answers; a flagged task is never retried nor dead-lettered, also when
its process died; finished tasks are left alone; the idempotency key is free again.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from corral import SQLiteStore
from corral.store import RedisStore
from corral.store._schema import check_and_migrate
from storehelpers import NOW, new_task
from test_store_contract import StoreFactory, open_store  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def test_a_pending_task_is_cancelled_kept_and_never_claimed(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    task, other = new_task(), new_task()
    async with open_store() as store:
        await store.enqueue([task, other])
        assert await store.cancel(task.id, now=NOW + 1) == "pending"
        record = await store.get(task.id)
        assert record is not None and record.state == "cancelled"
        assert record.last_error == "cancelled by id before it ran"
        assert [r.id for r in await store.claim("q", limit=10, now=NOW + 2)] == [other.id]
    async with open_store() as store:  # durable: a restarted process sees the same
        assert [r.id for r in await store.list_tasks(state="cancelled")] == [task.id]
        assert await store.claim("q", limit=10, now=NOW + 3) == []
        (stats,) = await store.stats()
        assert (stats.pending, stats.running, stats.cancelled) == (0, 1, 1)
        assert await store.cancel(task.id, now=NOW + 4) == "cancelled"  # nothing changes
        assert await store.cancel("no-such-task", now=NOW + 4) is None


async def test_a_task_waiting_for_its_retry_or_its_time_is_cancelled_at_once(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    waiting, delayed = new_task(), new_task(not_before=NOW + 60)
    async with open_store() as store:
        await store.enqueue([waiting, delayed])
        await store.claim("q", limit=1, now=NOW)
        await store.retry_later(
            waiting.id, not_before=NOW + 30, error="E: x", traceback="", now=NOW
        )
        assert await store.cancel(waiting.id, now=NOW + 1) == "pending"
        assert await store.cancel(delayed.id, now=NOW + 1) == "pending"
        assert await store.claim("q", limit=10, now=NOW + 100) == []
        assert await store.next_due("q") is None


async def test_a_running_task_is_flagged_and_its_failure_is_not_retried(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    retried, final = new_task(max_attempts=3), new_task(max_attempts=1)
    async with open_store() as store:
        await store.enqueue([retried, final])
        await store.claim("q", limit=2, now=NOW)
        assert await store.cancel(retried.id, now=NOW + 1) == "running"
        assert await store.cancel(final.id, now=NOW + 1) == "running"
        flagged = await store.cancel_requests("q", [retried.id, final.id])  # type: ignore[attr-defined]
        assert sorted(flagged) == sorted([retried.id, final.id])
        state = await store.retry_later(
            retried.id, not_before=NOW + 2, error="E: boom", traceback="tb", now=NOW + 2
        )
        assert state == "cancelled"
        assert await store.dead_letter(final.id, error="E: x", traceback="", now=NOW + 2) == (
            "cancelled"
        )
        assert await store.list_dead() == []
        assert await store.claim("q", limit=10, now=NOW + 10) == []
        record = await store.get(retried.id)
        assert record is not None and record.state == "cancelled"
        assert record.last_error == "E: boom"  # why its last attempt ended stays visible


async def test_record_cancelled_ends_a_flagged_attempt_and_completion_wins_the_race(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    stopped, finished = new_task(), new_task(key="k-1")
    async with open_store() as store:
        await store.enqueue([stopped, finished])
        await store.claim("q", limit=2, now=NOW)
        await store.cancel(stopped.id, now=NOW + 1)
        await store.cancel(finished.id, now=NOW + 1)
        await store.record_cancelled(stopped.id, error="cancelled by id while running", now=NOW + 2)
        await store.complete(finished.id, result='"ok"', now=NOW + 2)  # finished first: done
        one = await store.get(stopped.id)
        two = await store.get(finished.id)
        assert one is not None and one.state == "cancelled"
        assert two is not None and (two.state, two.result) == ("done", '"ok"')
        assert await store.cancel(finished.id, now=NOW + 3) == "done"


async def test_a_cancel_made_while_the_process_was_down_is_honoured_on_restart(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    task = new_task()
    async with open_store() as store:
        await store.enqueue([task])
        await store.claim("q", limit=1, now=NOW)  # ... and the process dies
    async with open_store() as other:  # e.g. `corral tasks cancel` meanwhile
        assert await other.cancel(task.id, now=NOW + 1) == "running"
    async with open_store() as store:  # the restarted owner must not run it again
        await store.recover("q", now=NOW + 2)
        assert await store.claim("q", limit=10, now=NOW + 3) == []
        record = await store.get(task.id)
        assert record is not None and record.state == "cancelled"


async def test_a_cancelled_tasks_idempotency_key_is_free_again(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    first = new_task(key="order-7")
    async with open_store() as store:
        await store.enqueue([first])
        await store.cancel(first.id, now=NOW + 1)
        again = new_task(key="order-7")
        (outcome,) = await store.enqueue([again])
        assert outcome.created and outcome.id == again.id


async def test_ids_are_found_by_prefix_in_every_state(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    tasks = [new_task() for _ in range(3)]
    async with open_store() as store:
        await store.enqueue(tasks)
        await store.cancel(tasks[0].id, now=NOW)
        await store.claim("q", limit=1, now=NOW)
        for task in tasks:
            assert await store.match_ids(task.id[:12]) == [task.id]
        assert sorted(await store.match_ids("")) == sorted(t.id for t in tasks)
        assert await store.match_ids("zz-no-such") == []
        assert len(await store.match_ids("", limit=2)) == 2


async def test_cancel_requests_report_pending_tasks_cancelled_elsewhere(
    open_store: StoreFactory,  # noqa: F811
) -> None:
    early, later = new_task(), new_task()
    async with open_store() as store, open_store() as elsewhere:
        store.cancel_check_every = 0.05  # type: ignore[attr-defined]
        await store.enqueue([early, later])
        await elsewhere.cancel(early.id, now=NOW)  # before the watcher's first look
        assert await store.cancel_requests("q", []) == []  # type: ignore[attr-defined]
        await elsewhere.cancel(later.id, now=time.time())
        assert await store.cancel_requests("q", []) == [later.id]  # type: ignore[attr-defined]
        assert await store.cancel_requests("q", []) == []  # type: ignore[attr-defined]


async def test_redis_a_cancel_flag_follows_a_reclaimed_lease(redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    stream = f"reclaim:{time.monotonic_ns()}"
    task = new_task()
    async with (
        RedisStore(url, stream=stream, consumer="dead", visibility_timeout=0.2) as dead,
        RedisStore(url, stream=stream, consumer="alive", visibility_timeout=0.2) as alive,
    ):
        await dead.enqueue([task])
        assert [r.id for r in await dead.claim("q", limit=1, now=NOW)] == [task.id]
        assert await alive.cancel(task.id, now=NOW) == "running"
        dead._leases.clear()  # as if its process died: nobody renews the lease
        time.sleep(0.4)  # ... which expires
        assert await alive.claim("q", limit=1, now=NOW + 1) == []  # cancelled, not re-run
        record = await alive.get(task.id)
        assert record is not None and record.state == "cancelled"


async def test_a_database_written_before_cancel_existed_opens_and_migrates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    check_and_migrate(conn, str(path), target=2)  # the schema today's main creates
    conn.execute(
        "INSERT INTO tasks (id, queue, name, payload, attempts, max_attempts, not_before,"
        " created_at, updated_at, state) VALUES"
        " ('old-1', 'q', 'jobs.echo', '{\"args\":[1],\"kwargs\":{}}', 0, 3, ?, ?, ?, 'pending'),"
        " ('old-2', 'q', 'jobs.echo', '{\"args\":[2],\"kwargs\":{}}', 1, 3, ?, ?, ?, 'running')",
        (NOW,) * 6,
    )
    conn.close()
    async with SQLiteStore(path) as store:
        assert await store.cancel("old-1", now=NOW + 1) == "pending"
        assert await store.cancel("old-2", now=NOW + 1) == "running"
        await store.recover("q", now=NOW + 2)
        assert await store.claim("q", limit=10, now=NOW + 3) == []
        assert {r.id for r in await store.list_tasks(state="cancelled")} == {"old-1", "old-2"}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 3
    conn.close()
