"""TaskQueue(store=RedisStore(...)) on both backends: the durable-queue semantics of the
SQLite store (persist before ack, retries, DLQ, idempotency, replay), plus what only a
shared stream does: a queue in one place runs what another submitted, woken at once."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import corral
import pytest
import redis
from conftest_redis import RedisServer
from corral import RedisStore, Retry, TaskDeadLettered, exponential
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

seen: list[Any] = []
failures_left: dict[str, int] = {}
gates: dict[str, anyio.Event] = {}


@corral.task(name="redis_tests.echo")
async def echo(value: Any) -> Any:
    seen.append(value)
    return value


@corral.task(name="redis_tests.flaky", retry=Retry(5, backoff=exponential(0.001, 0.002)))
async def flaky(label: str) -> str:
    left = failures_left.get(label, 0)
    if left:
        failures_left[label] = left - 1
        raise ConnectionError(f"{label}: transient")
    return label


@corral.task(name="redis_tests.broken", retry=Retry(2, backoff=exponential(0.001, 0.001)))
async def broken() -> None:
    raise ValueError("always broken")


@corral.task(name="redis_tests.wait_for")
async def wait_for(gate: str) -> str:
    await gates[gate].wait()
    return gate


def stream() -> str:
    return f"q:{uuid.uuid4().hex[:12]}"


def queue(
    server: RedisServer,
    name: str,
    *,
    consumer: str = "p1",
    registry: CollectorRegistry | None = None,
    workers: int = 4,
) -> corral.TaskQueue:
    return corral.TaskQueue(
        "jobs",
        workers=workers,
        capacity=1000,
        store=RedisStore(server.url, stream=name, consumer=consumer),
        registry=registry or CollectorRegistry(),
    )


async def test_submit_is_stored_before_it_returns_and_runs(redis_server: RedisServer) -> None:
    name = stream()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    async with queue(redis_server, name) as q:
        gates[name] = anyio.Event()
        handle = await q.submit(wait_for, name)
        record = client.hgetall(f"{name}:t:{handle.id}")
        assert record["name"] == "redis_tests.wait_for" and record["queue"] == "jobs"
        gates[name].set()
        assert await handle == name
        results = [await q.submit(echo, i) for i in range(20)]
        assert sorted([await h for h in results]) == list(range(20))
    assert client.zcard(f"{name}:live") == 0 and client.xlen(name) == 0


async def test_retries_then_success_and_dead_letter(redis_server: RedisServer) -> None:
    name = stream()
    failures_left[name] = 2
    registry = CollectorRegistry()
    async with queue(redis_server, name, registry=registry) as q:
        ok = await q.submit(flaky, name)
        bad = await q.submit(broken)
        assert await ok == name
        with pytest.raises(TaskDeadLettered, match="always broken") as info:
            await bad
        assert info.value.attempts == 2
        (dead,) = await q._store.list_dead()  # type: ignore[union-attr]
        assert dead.id == bad.id and "ValueError" in (dead.last_traceback or "")
        retries = registry.get_sample_value(
            "corral_task_retries_total", {"queue": "jobs", "task": "redis_tests.flaky"}
        )
        assert retries == 2
        assert registry.get_sample_value("corral_store_dead_letters", {"queue": "jobs"}) == 1


async def test_idempotency_key_across_processes(redis_server: RedisServer) -> None:
    name = stream()
    client = redis.Redis.from_url(redis_server.url)
    async with (
        queue(redis_server, name, consumer="a") as a,
        queue(redis_server, name, consumer="b") as b,
    ):
        first = await a.submit(echo, f"{name}-once", idempotency_key=f"{name}-k")
        second = await b.submit(echo, f"{name}-twice", idempotency_key=f"{name}-k")
        assert second.id == first.id
        # Either process may run it; a handle only resolves where the task ran.
        with anyio.fail_after(10):
            while client.zcard(f"{name}:live"):
                await anyio.sleep(0.01)
    assert seen.count(f"{name}-once") == 1 and f"{name}-twice" not in seen


async def test_a_queue_runs_what_another_submitted_without_polling(
    redis_server: RedisServer,
) -> None:
    name = stream()
    async with queue(redis_server, name, consumer="worker") as worker:
        # give the worker's feeder time to go idle, blocked in XREAD
        await anyio.sleep(0.2)
        async with RedisStore(redis_server.url, stream=name, consumer="web") as web:
            from corral.store import NewTask

            task = NewTask(
                id=uuid.uuid4().hex,
                queue="jobs",
                name="redis_tests.echo",
                payload=f'{{"args":["{name}"],"kwargs":{{}}}}',
                max_attempts=3,
                not_before=0.0,
                created_at=0.0,
            )
            with anyio.fail_after(0.6):  # the runner's idle poll alone would take 0.8 s
                await web.enqueue([task])
                while name not in seen:
                    await anyio.sleep(0.005)
        assert worker._durable is not None


async def test_unfinished_tasks_are_replayed_by_the_same_consumer(
    redis_server: RedisServer,
) -> None:
    name = stream()
    gates[name] = anyio.Event()
    async with queue(redis_server, name, consumer="w") as q:
        handle = await q.submit(wait_for, name)
        with anyio.fail_after(10):
            while not (await q._store.list_tasks(state="running")):  # type: ignore[union-attr]
                await anyio.sleep(0.01)
        await q.aclose(timeout=0)  # the running attempt is cut short
    with pytest.raises(corral.TaskCancelled):
        await handle
    gates[name].set()
    async with queue(redis_server, name, consumer="w") as q:
        with anyio.fail_after(10):
            while await q._store.list_tasks():  # type: ignore[union-attr]
                await anyio.sleep(0.01)
