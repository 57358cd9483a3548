"""The Store contract, run against every backend (add yours to the ``open_store`` fixture).

Each test drives the state machine of :mod:`corral.store.base` (pending -> running ->
done | pending again | dead, and back with requeue) through the protocol only, including
reopening the storage in between, as a restarted process would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from corral.store import RedisStore, SQLiteStore, Store
from storehelpers import NOW, new_task

pytestmark = pytest.mark.anyio


StoreFactory = Callable[[], Store]


#: Cases that put several queues in one store (not how RedisStore is used).
_SEVERAL_QUEUES = {
    "test_dead_letter_requeue_and_purge",
    "test_idempotency_key_returns_existing_task_in_every_state",
    "test_metrics_snapshot_counts_pending_and_dead",
}


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory that opens (and, called again, reopens) one durable storage."""
    if request.param == "redis":
        if request.function.__name__ in _SEVERAL_QUEUES:
            pytest.skip("a RedisStore serves one queue per stream: several queues, several stores")
        url = request.getfixturevalue("redis_server").url
        name = f"contract:{uuid.uuid4().hex[:12]}"
        return lambda: RedisStore(url, stream=name, consumer="contract", keep_done=60)
    return lambda: SQLiteStore(tmp_path / "tasks.db", keep_done=60)


async def test_enqueue_claim_complete_round_trip(open_store: StoreFactory) -> None:
    async with open_store() as store:
        task = new_task(args='[1, "two"]')
        (outcome,) = await store.enqueue([task])
        assert outcome.created and outcome.id == task.id
        (claimed,) = await store.claim("q", limit=10, now=NOW)
        assert (claimed.id, claimed.state, claimed.attempts) == (task.id, "running", 1)
        assert claimed.args == [1, "two"] and claimed.kwargs == {}
        assert await store.claim("q", limit=10, now=NOW) == []
        await store.complete(task.id, result="42", now=NOW + 1)
        assert await store.get(task.id) is None  # no key: nothing kept after success
        assert await store.list_tasks() == []


async def test_claim_persists_attempts_and_keeps_fifo_order(open_store: StoreFactory) -> None:
    tasks = [new_task() for _ in range(5)]
    async with open_store() as store:
        await store.enqueue(tasks)
        first = await store.claim("q", limit=2, now=NOW)
        assert [r.id for r in first] == [t.id for t in tasks[:2]]
    async with open_store() as store:  # a new process would see the same
        running = await store.list_tasks(state="running")
        assert {r.id: r.attempts for r in running} == {t.id: 1 for t in tasks[:2]}
        rest = await store.claim("q", limit=10, now=NOW)
        assert [r.id for r in rest] == [t.id for t in tasks[2:]]


async def test_retry_not_before_survives_restart(open_store: StoreFactory) -> None:
    task = new_task()
    async with open_store() as store:
        await store.enqueue([task])
        await store.claim("q", limit=1, now=NOW)
        await store.retry_later(task.id, not_before=NOW + 30, error="E: x", traceback="tb", now=NOW)
    async with open_store() as store:
        assert await store.next_due("q") == NOW + 30
        assert await store.claim("q", limit=1, now=NOW + 29.9) == []  # not hastened
        (again,) = await store.claim("q", limit=1, now=NOW + 30)  # nor lost
        assert (again.attempts, again.last_error, again.last_traceback) == (2, "E: x", "tb")


async def test_dead_letter_requeue_and_purge(open_store: StoreFactory) -> None:
    async with open_store() as store:
        a, b = new_task(), new_task(queue="other")
        await store.enqueue([a, b])
        for queue in ("q", "other"):
            (rec,) = await store.claim(queue, limit=1, now=NOW)
            await store.dead_letter(rec.id, error="ValueError: bad", traceback="tb", now=NOW + 1)
        dead = await store.list_dead()
        assert {r.id for r in dead} == {a.id, b.id}
        assert all(r.state == "dead" and r.attempts == 1 for r in dead)
        shown = await store.get(a.id)
        assert shown is not None and shown.last_error == "ValueError: bad"
        assert await store.requeue_dead([a.id, "missing"], now=NOW + 2) == [a.id]
        (back,) = await store.list_tasks(queue="q")
        assert (back.state, back.attempts) == ("pending", 0)
        assert await store.purge_dead(queue="q") == 0
        assert await store.purge_dead() == 1
        assert await store.list_dead() == []
        assert await store.requeue_dead(None, now=NOW) == []


async def test_recover_requeues_or_dead_letters_interrupted_starts(
    open_store: StoreFactory,
) -> None:
    fresh, last = new_task(max_attempts=3), new_task(max_attempts=1)
    async with open_store() as store:
        await store.enqueue([fresh, last])
        await store.claim("q", limit=2, now=NOW)  # then the process "dies"
    async with open_store() as store:
        report = await store.recover("q", now=NOW + 5)
        assert report.requeued == [fresh.id] and report.dead == [last.id]
        dead = await store.get(last.id)
        assert dead is not None and dead.state == "dead"
        assert dead.last_error is not None and "process exited" in dead.last_error
        pending = await store.get(fresh.id)
        assert pending is not None and (pending.state, pending.attempts) == ("pending", 1)


async def test_idempotency_key_returns_existing_task_in_every_state(
    open_store: StoreFactory,
) -> None:
    async with open_store() as store:
        first = new_task(key="order-42")
        dup = await store.enqueue([first, new_task(key="order-42")])
        assert [d.created for d in dup] == [True, False]
        assert dup[1].id == first.id and dup[1].state == "pending"
        assert (await store.enqueue([new_task(queue="other", key="order-42")]))[0].created

        await store.claim("q", limit=1, now=NOW)
        (running,) = await store.enqueue([new_task(key="order-42")])
        assert (running.created, running.state) == (False, "running")

        await store.complete(first.id, result='{"ok":true}', now=NOW + 1)
        (done,) = await store.enqueue([new_task(key="order-42")])
        assert (done.created, done.state, done.id) == (False, "done", first.id)
        assert done.record is not None and done.record.result == '{"ok":true}'

        assert await store.purge_done(older_than=NOW + 2) == 1
        (again,) = await store.enqueue([new_task(key="order-42")])
        assert again.created  # retention over: the key is free again

        (rec,) = await store.claim("q", limit=1, now=NOW)
        await store.dead_letter(rec.id, error="boom", traceback="", now=NOW)
        (dead,) = await store.enqueue([new_task(key="order-42")])
        assert (dead.created, dead.state, dead.id) == (False, "dead", rec.id)


async def test_metrics_snapshot_counts_pending_and_dead(open_store: StoreFactory) -> None:
    async with open_store() as store:
        await store.enqueue([new_task(), new_task(), new_task(queue="b")])
        (rec,) = await store.claim("b", limit=1, now=NOW)
        await store.dead_letter(rec.id, error="x", traceback="", now=NOW)
        snap = store.metrics_snapshot()
        assert snap.pending == {"q": 2}
        assert snap.dead == {"b": 1}
        assert snap.commits["q"].count >= 1
        assert await store.requeue_dead(None, now=NOW) == [rec.id]
        assert store.metrics_snapshot().pending == {"q": 2, "b": 1}
        (rec,) = await store.claim("b", limit=1, now=NOW)
        await store.dead_letter(rec.id, error="x", traceback="", now=NOW)
        assert await store.purge_dead() == 1
        (done,) = await store.claim("q", limit=1, now=NOW)
        await store.complete(done.id, result=None, now=NOW)
        snap = store.metrics_snapshot()
        assert (snap.pending, snap.dead) == ({"q": 1}, {})
