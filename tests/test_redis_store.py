"""RedisStore against a real redis-server: transitions, group commit, idempotency,
leases and reclaiming, blocking waits, foreign keys, metrics."""

from __future__ import annotations

import uuid

import anyio
import pytest
import redis
from conftest_redis import RedisServer
from corral.store import RedisStore, StoreCorrupt, StoreError
from prometheus_client import CollectorRegistry
from storehelpers import NOW, new_task

pytestmark = pytest.mark.anyio


def stream() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


async def test_enqueue_claim_complete_round_trip(redis_server: RedisServer) -> None:
    name = stream()
    async with RedisStore(redis_server.url, stream=name, consumer="w1") as store:
        task = new_task(args='[1, "two"]')
        (outcome,) = await store.enqueue([task])
        assert outcome.created and outcome.id == task.id
        assert raw(redis_server).xlen(name) == 1  # XADD happened before the reply
        (claimed,) = await store.claim("q", limit=10, now=NOW)
        assert (claimed.id, claimed.state, claimed.attempts) == (task.id, "running", 1)
        assert claimed.args == [1, "two"] and claimed.kwargs == {}
        assert await store.claim("q", limit=10, now=NOW) == []
        await store.complete(task.id, result="42", now=NOW + 1)
        assert await store.get(task.id) is None  # no key: nothing kept after success
        assert await store.list_tasks() == []
        assert raw(redis_server).xlen(name) == 0  # XACK + XDEL


async def test_concurrent_submits_share_pipelines(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream()) as store:
        tickets = [store.enqueue_nowait([new_task()]) for _ in range(300)]
        outcomes = [await ticket for ticket in tickets]
        assert all(o.created for (o,) in outcomes)
        commits = store.metrics_snapshot().commits["q"]
        assert 1 <= commits.count < 300  # many submits per round trip
        (stats,) = await store.stats()
        assert (stats.queue, stats.pending, stats.running) == ("q", 300, 0)


async def test_idempotency_key_returns_the_existing_task(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream(), keep_done=60) as store:
        first, second = new_task(key="order-42"), new_task(key="order-42")
        (a,), (b,) = await store.enqueue([first]), await store.enqueue([second])
        assert a.created and not b.created and b.id == first.id and b.state == "pending"
        (claimed,) = await store.claim("q", limit=5, now=NOW)
        assert claimed.id == first.id
        await store.complete(first.id, result='{"ok": true}', now=NOW + 1)
        (c,) = await store.enqueue([new_task(key="order-42")])
        assert not c.created and c.state == "done" and c.record is not None
        assert c.record.result == '{"ok": true}'
        assert [r.id for r in await store.list_tasks(state="done")] == [first.id]
        assert await store.purge_done(older_than=NOW + 2) == 1
        (d,) = await store.enqueue([new_task(key="order-42")])
        assert d.created and d.id != first.id


async def test_duplicate_keys_in_one_batch_make_one_task(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream()) as store:
        tickets = [store.enqueue_nowait([new_task(key="same")]) for _ in range(20)]
        outcomes = [(await t)[0] for t in tickets]
        assert sum(o.created for o in outcomes) == 1
        assert len({o.id for o in outcomes}) == 1
        (stats,) = await store.stats()
        assert stats.pending == 1


async def test_retry_waits_in_the_sorted_set_until_due(redis_server: RedisServer) -> None:
    name = stream()
    async with RedisStore(redis_server.url, stream=name) as store:
        task = new_task()
        await store.enqueue([task])
        await store.claim("q", limit=1, now=NOW)
        await store.retry_later(
            task.id, not_before=NOW + 30, error="ValueError: boom", traceback="tb", now=NOW
        )
        assert raw(redis_server).zscore(f"{name}:retry", task.id) == NOW + 30
        assert await store.claim("q", limit=1, now=NOW + 29) == []
        assert await store.next_due("q") == NOW + 30
        (again,) = await store.claim("q", limit=1, now=NOW + 30)
        assert (again.id, again.attempts, again.last_error) == (task.id, 2, "ValueError: boom")
        assert raw(redis_server).zcard(f"{name}:retry") == 0


async def test_dead_letter_stream_requeue_and_purge(redis_server: RedisServer) -> None:
    name = stream()
    async with RedisStore(redis_server.url, stream=name) as store:
        tasks = [new_task(key=f"k{i}") for i in range(3)]
        await store.enqueue(tasks)
        for claimed in await store.claim("q", limit=3, now=NOW):
            await store.dead_letter(claimed.id, error="E: final", traceback="tb", now=NOW)
        assert raw(redis_server).xlen(f"{name}:dead") == 3
        dead = await store.list_dead()
        assert [r.id for r in dead] == [t.id for t in tasks]
        assert all(r.state == "dead" and r.last_error == "E: final" for r in dead)
        (stats,) = await store.stats()
        assert (stats.pending, stats.running, stats.dead) == (0, 0, 3)
        assert await store.requeue_dead([tasks[0].id, "missing"], now=NOW) == [tasks[0].id]
        (back,) = await store.claim("q", limit=5, now=NOW)
        assert (back.id, back.attempts) == (tasks[0].id, 1)
        # a dead task still owns its idempotency key
        (dup,) = await store.enqueue([new_task(key="k1")])
        assert not dup.created and dup.state == "dead"
        assert await store.purge_dead() == 2
        assert await store.list_dead() == []
        (fresh,) = await store.enqueue([new_task(key="k1")])
        assert fresh.created


async def test_requeue_all_dead(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream()) as store:
        await store.enqueue([new_task(), new_task()])
        for claimed in await store.claim("q", limit=2, now=NOW):
            await store.dead_letter(claimed.id, error="E", traceback="", now=NOW)
        assert len(await store.requeue_dead(None, now=NOW)) == 2
        assert len(await store.list_tasks(state="pending")) == 2


async def test_restarted_consumer_takes_back_its_tasks(redis_server: RedisServer) -> None:
    name = stream()
    async with RedisStore(redis_server.url, stream=name, consumer="w1") as store:
        last_try, fresh = new_task(max_attempts=1), new_task(max_attempts=3)
        await store.enqueue([last_try, fresh])
        assert len(await store.claim("q", limit=2, now=NOW)) == 2
    # "w1" died holding both; the same name comes back
    async with RedisStore(redis_server.url, stream=name, consumer="w1") as store:
        report = await store.recover("q", now=NOW + 1)
        assert report.requeued == [fresh.id] and report.dead == [last_try.id]
        (again,) = await store.claim("q", limit=5, now=NOW + 1)
        assert (again.id, again.attempts) == (fresh.id, 2)
        assert "process exited" in (again.last_error or "")


async def test_expired_lease_is_reclaimed_by_another_consumer(redis_server: RedisServer) -> None:
    name = stream()
    task = new_task()
    dead_one = new_task(max_attempts=1)
    async with RedisStore(redis_server.url, stream=name, consumer="a") as a:
        await a.enqueue([task, dead_one])
        assert len(await a.claim("q", limit=2, now=NOW)) == 2
    async with RedisStore(redis_server.url, stream=name, consumer="b", visibility_timeout=0.5) as b:
        assert await b.claim("q", limit=5, now=NOW) == []  # a's lease still fresh
        await anyio.sleep(0.6)
        b._next_reclaim = 0.0
        (taken,) = await b.claim("q", limit=5, now=NOW)
        assert (taken.id, taken.attempts) == (task.id, 2)
        assert "lease" in (taken.last_error or "") and "(a)" in (taken.last_error or "")
        assert [r.id for r in await b.list_dead()] == [dead_one.id]
        await b.complete(task.id, result=None, now=NOW)
        assert raw(redis_server).xlen(name) == 0


async def test_live_worker_renews_its_lease(redis_server: RedisServer) -> None:
    name = stream()
    async with (
        RedisStore(redis_server.url, stream=name, consumer="a", visibility_timeout=0.6) as a,
        RedisStore(redis_server.url, stream=name, consumer="b", visibility_timeout=0.6) as b,
    ):
        task = new_task()
        await a.enqueue([task])
        await a.claim("q", limit=1, now=NOW)
        for _ in range(4):  # 1.2 s: twice the visibility timeout
            await anyio.sleep(0.3)
            b._next_reclaim = 0.0
            assert await b.claim("q", limit=5, now=NOW) == []
        await a.complete(task.id, result=None, now=NOW)


async def test_wait_for_work_wakes_on_a_submit_from_elsewhere(redis_server: RedisServer) -> None:
    name = stream()
    async with (
        RedisStore(redis_server.url, stream=name, consumer="worker") as worker,
        RedisStore(redis_server.url, stream=name, consumer="web") as web,
    ):
        woke = anyio.Event()

        async def waiter() -> None:
            await worker.wait_for_work("q", timeout=30)
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            assert not woke.is_set()
            await web.enqueue([new_task()])
            with anyio.fail_after(10):
                await woke.wait()
        # undelivered work: returns at once
        with anyio.fail_after(10):
            await worker.wait_for_work("q", timeout=30)


async def test_cancelled_wait_unblocks_the_read(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream()) as store:
        with anyio.move_on_after(0.1):
            await store.wait_for_work("q", timeout=30)
        # the blocked XREAD was unblocked: its thread let go of the connection
        free = await anyio.to_thread.run_sync(lambda: store._wait_lock.acquire(timeout=10))
        assert free
        store._wait_lock.release()


async def test_refuses_keys_it_did_not_create(redis_server: RedisServer) -> None:
    client = raw(redis_server)
    name = stream()
    client.set(name, "precious")
    with pytest.raises(StoreCorrupt, match="holds a string"):
        async with RedisStore(redis_server.url, stream=name):
            pass
    assert client.get(name) == "precious"
    other = stream()
    client.xadd(other, {"x": "1"})
    with pytest.raises(StoreCorrupt, match="corral did not create it"):
        async with RedisStore(redis_server.url, stream=other):
            pass
    assert client.xlen(other) == 1


async def test_unreachable_redis_is_a_clear_error() -> None:
    with socket_closed_port() as port:
        url = f"redis://:secret@127.0.0.1:{port}/0"
        with pytest.raises(StoreError, match="cannot reach Redis") as info:
            async with RedisStore(url):
                pass
        assert "secret" not in str(info.value)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="url must look like"):
        RedisStore("localhost:6379")
    with pytest.raises(ValueError, match="visibility_timeout"):
        RedisStore("redis://localhost", visibility_timeout=0)
    with pytest.raises(ValueError, match="stream"):
        RedisStore("redis://localhost", stream="")


async def test_one_stream_serves_one_queue(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream()) as store:
        await store.enqueue([new_task("emails")])
        with pytest.raises(StoreError, match="already serves queue 'emails'"):
            await store.claim("sms", limit=1, now=NOW)


async def test_metrics_report_pending_dead_and_consumer_lag(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    async with RedisStore(redis_server.url, stream=stream(), registry=registry) as store:
        await store.enqueue([new_task("m") for _ in range(5)])
        lag = registry.get_sample_value("corral_store_consumer_lag", {"queue": "m"})
        assert lag == 5
        (first, _second) = await store.claim("m", limit=2, now=NOW)
        await store.dead_letter(first.id, error="E", traceback="", now=NOW)
        assert registry.get_sample_value("corral_store_consumer_lag", {"queue": "m"}) == 3
        snapshot = store.metrics_snapshot()
        assert snapshot.pending == {"m": 4} and snapshot.dead == {"m": 1}
    assert registry.get_sample_value("corral_store_consumer_lag", {"queue": "m"}) is None


class socket_closed_port:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


async def test_wait_replicas_refuses_an_unreplicated_ack(redis_server: RedisServer) -> None:
    async with RedisStore(
        redis_server.url, stream=stream(), wait_replicas=1, wait_timeout=0.05
    ) as store:
        with pytest.raises(StoreError, match="only 0 of 1 replicas confirmed"):
            await store.enqueue([new_task()])


async def test_next_due_without_a_fresh_claim(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, stream=stream()) as store:
        assert await store.next_due("q") is None
        await store.enqueue([new_task(not_before=4_000_000_000.0)])
        assert await store.next_due("q") == 4_000_000_000.0  # a retry waiting in the zset
        await store.enqueue([new_task()])
        assert await store.next_due("q") == 0.0  # undelivered: due now


async def test_foreign_marker_is_refused(redis_server: RedisServer) -> None:
    name = stream()
    raw(redis_server).hset(f"{name}:meta", "format", "something-else")
    with pytest.raises(StoreCorrupt, match="not a corral task stream marker"):
        async with RedisStore(redis_server.url, stream=name):
            pass


def test_passwords_never_reach_messages() -> None:
    store = RedisStore("redis://user:hunter2@db.internal:6380/2", stream="s")
    assert "hunter2" not in repr(store) and "user:***@db.internal:6380" in repr(store)
