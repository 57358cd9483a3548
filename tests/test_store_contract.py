"""The Store contract, run against every backend (add yours to the ``open_store`` fixture).

Each test drives the state machine of :mod:`corral.store.base` (pending -> running ->
done | pending again | dead, and back with requeue) through the protocol only, including
reopening the storage in between, as a restarted process would.
"""

from __future__ import annotations

import time
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


async def test_one_task_per_ordering_key_in_enqueue_order(open_store: StoreFactory) -> None:
    a1, a2, b1, free, a3 = (
        new_task(order_key="a"),
        new_task(order_key="a"),
        new_task(order_key="b"),
        new_task(),
        new_task(order_key="a"),
    )
    async with open_store() as store:
        await store.enqueue([a1, a2, b1, free, a3])
        claimed = await store.claim("q", limit=10, now=NOW)
        assert {t.id for t in claimed} == {a1.id, b1.id, free.id}  # one per key, others free
        assert {t.key for t in claimed} == {"a", "b", None}
        assert await store.claim("q", limit=10, now=NOW) == []
    async with open_store() as store:  # a restart keeps the line
        await store.recover("q", now=NOW)
        (again,) = [t for t in await store.claim("q", limit=10, now=NOW) if t.key == "a"]
        assert again.id == a1.id  # the interrupted head runs again before a2
        await store.complete(a1.id, result=None, now=NOW)
        (nxt,) = await store.claim("q", limit=10, now=NOW)
        assert nxt.id == a2.id
        await store.complete(a2.id, result=None, now=NOW)
        (last,) = await store.claim("q", limit=10, now=NOW)
        assert last.id == a3.id


async def test_a_retry_keeps_its_place_in_its_key(open_store: StoreFactory) -> None:
    first, second = new_task(order_key="k", max_attempts=2), new_task(order_key="k")
    async with open_store() as store:
        await store.enqueue([first, second])
        (claimed,) = await store.claim("q", limit=10, now=NOW)
        await store.retry_later(claimed.id, not_before=NOW + 10, error="e", traceback="", now=NOW)
        assert await store.claim("q", limit=10, now=NOW + 5) == []  # second waits for it
        assert await store.next_due("q") == NOW + 10  # the held task is not "due"
        (retried,) = await store.claim("q", limit=10, now=NOW + 10)
        assert retried.id == first.id and retried.attempts == 2
        await store.dead_letter(first.id, error="final", traceback="", now=NOW + 11)
        (nxt,) = await store.claim("q", limit=10, now=NOW + 11)
        assert nxt.id == second.id
        # requeued from the dead-letter table: back at the end of its key's line
        assert await store.requeue_dead([first.id], now=NOW + 12) == [first.id]
        assert await store.claim("q", limit=10, now=NOW + 12) == []
        await store.complete(second.id, result=None, now=NOW + 13)
        (back,) = await store.claim("q", limit=10, now=NOW + 13)
        assert back.id == first.id


async def test_a_delayed_head_holds_its_key(open_store: StoreFactory) -> None:
    now = time.time()  # RedisStore compares not_before with its own clock at enqueue
    later = new_task(order_key="k", not_before=now + 60)
    after = new_task(order_key="k", not_before=now)
    async with open_store() as store:
        await store.enqueue([later, after])
        assert await store.claim("q", limit=10, now=now + 1) == []
        (claimed,) = await store.claim("q", limit=10, now=now + 60)
        assert claimed.id == later.id


async def test_dead_after_interruption_releases_the_key(open_store: StoreFactory) -> None:
    head, nxt = new_task(order_key="k", max_attempts=1), new_task(order_key="k")
    async with open_store() as store:
        await store.enqueue([head, nxt])
        await store.claim("q", limit=10, now=NOW)
    async with open_store() as store:  # the process died during head's last attempt
        report = await store.recover("q", now=NOW + 1)
        assert report.dead == [head.id]
        (claimed,) = await store.claim("q", limit=10, now=NOW + 1)
        assert claimed.id == nxt.id


async def test_a_cancelled_task_lets_the_next_of_its_key_go(open_store: StoreFactory) -> None:
    head, middle, last = (new_task(order_key="k") for _ in range(3))
    running, after = new_task(order_key="r"), new_task(order_key="r")
    async with open_store() as store:
        await store.enqueue([running, after])
        (claimed,) = await store.claim("q", limit=10, now=NOW)
        assert claimed.id == running.id
        await store.enqueue([head, middle, last])
        assert await store.cancel(middle.id, now=NOW) == "pending"  # held: leaves the line
        assert await store.cancel(head.id, now=NOW) == "pending"  # due head: key goes on
        (nxt,) = await store.claim("q", limit=10, now=NOW)
        assert nxt.id == last.id
        await store.cancel(running.id, now=NOW)  # running: flagged, ends with its attempt
        assert await store.claim("q", limit=10, now=NOW) == []
        await store.record_cancelled(running.id, error="cancelled", now=NOW)
        (freed,) = await store.claim("q", limit=10, now=NOW)
        assert freed.id == after.id
