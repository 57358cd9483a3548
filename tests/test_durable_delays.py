"""Delayed durable tasks (SQLite file and real redis-server): stored as the row's due time,
the field retries use, so they survive restarts, are never hastened, run once, and are
never leased before they are due (no visibility timeout can expire on a waiting task)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import corral
import pytest
import redis
from conftest_redis import RedisServer
from corral import RedisStore
from corral.store import Store
from prometheus_client import CollectorRegistry
from storehelpers import StoreFactory, store_factory

pytestmark = pytest.mark.anyio

runs: list[tuple[str, float]] = []


@corral.task(name="delay_tests.record")
async def record(label: str) -> str:
    runs.append((label, time.time()))
    return label


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    factory = store_factory(request, tmp_path, "delays")
    if request.param == "redis":
        return lambda: factory(consumer="d1", visibility_timeout=1.0)
    return factory


def make_queue(store: Store, workers: int = 2) -> corral.TaskQueue:
    return corral.TaskQueue(
        "delayed", workers=workers, capacity=100, store=store, registry=CollectorRegistry()
    )


async def test_a_delay_survives_a_restart_and_runs_once_not_before_its_time(
    make_store: StoreFactory,
) -> None:
    async with make_queue(make_store()) as q:
        submitted = time.time()
        handle = await q.submit(record, "later", delay=2.5)
        returned = time.time()
        at = datetime.now(UTC) + timedelta(seconds=2.5)
        by_date = await q.submit(record, "dated", not_before=at)
        stored = await q._store.get(handle.id)  # type: ignore[union-attr]
        assert stored is not None and stored.state == "pending"
        assert submitted + 2.5 <= stored.not_before <= returned + 2.5
        dated = await q._store.get(by_date.id)  # type: ignore[union-attr]
        assert dated is not None and dated.not_before == pytest.approx(at.timestamp(), abs=1e-3)
    # closed before they were due: they stayed stored (their handles say so)
    assert runs == []
    with pytest.raises(corral.TaskCancelled, match="stays stored"):
        await handle
    async with make_queue(make_store()) as q:
        with anyio.fail_after(15):
            while len(runs) < 2:
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)  # a duplicate would show up now
    assert sorted(label for label, _ in runs) == ["dated", "later"]
    for _label, ran_at in runs:
        assert ran_at >= submitted + 2.5 - 0.01  # never hastened by the restart


async def test_a_delay_longer_than_the_lease_is_never_leased_early(
    make_store: StoreFactory,
) -> None:
    """Celery's ETA bug (celery#2599): a delayed task held by a worker past the visibility
    timeout is redelivered and runs twice. Here it is not claimed before it is due."""
    async with make_queue(make_store()) as q:
        store = q._store
        start = time.time()
        handle = await q.submit(record, "eta", delay=2.5)  # 2.5 x the Redis lease
        while time.time() - start < 1.5:  # 1 s of margin before it is due
            current = await store.get(handle.id)  # type: ignore[union-attr]
            assert current is not None and current.state == "pending"
            assert current.attempts == 0  # never claimed, so never leased
            if isinstance(store, RedisStore):
                client = redis.Redis.from_url(store.url, decode_responses=True)
                assert client.xlen(store.stream) == 0  # not delivered to any consumer
                client.close()
            await anyio.sleep(0.2)
        with anyio.fail_after(10):
            assert await handle == "eta"
        await anyio.sleep(1.5)  # past another lease: a redelivery would run it again
    assert [label for label, _ in runs] == ["eta"]
    assert runs[0][1] >= start + 2.5 - 0.01


async def test_delayed_tasks_run_in_due_order_and_count_as_unfinished(
    make_store: StoreFactory,
) -> None:
    async with make_queue(make_store(), workers=1) as q:
        b = await q.submit(record, "b", delay=1.5)
        a = await q.submit(record, "a", delay=0.5)
        now = await q.submit(record, "now")
        stats = await q._store.stats()  # type: ignore[union-attr]
        assert sum(s.pending + s.running for s in stats) >= 2
        with anyio.fail_after(10):
            assert [await h for h in (now, a, b)] == ["now", "a", "b"]
    assert [label for label, _ in runs] == ["now", "a", "b"]


async def test_bad_delays_are_refused_before_anything_is_stored(
    make_store: StoreFactory,
) -> None:
    async with make_queue(make_store()) as q:
        with pytest.raises(ValueError, match="naive datetime"):
            await q.submit(record, "x", not_before=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="delay must be"):
            q.submit_nowait(record, "x", delay=-0.5)
        assert await q._store.list_tasks() == []  # type: ignore[union-attr]


async def test_redis_delay_reaches_a_worker_in_another_store(redis_server: RedisServer) -> None:
    name = f"delays:{uuid.uuid4().hex[:12]}"
    async with (
        make_queue(RedisStore(redis_server.url, stream=name, consumer="web")) as web,
        make_queue(RedisStore(redis_server.url, stream=name, consumer="worker")) as worker,
    ):
        start = time.time()
        await web.submit(record, "x", delay=0.5)
        with anyio.fail_after(10):
            while not runs:
                await anyio.sleep(0.02)
        await anyio.sleep(0.5)
        assert worker.is_open
    assert len(runs) == 1 and runs[0][1] >= start + 0.5 - 0.01
