"""middleware.rate_limit: task starts limited per key, in-process and fleet-wide on Redis.

The in-process limiter is proven against a controlled clock (exact GCRA slots) and in
real queues on both backends; the fleet-wide limiter runs in two real processes sharing
one redis-server, and the starts they record together must never exceed the budget in
any window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from conftest_redis import RedisServer
from corral import TaskQueue, middleware
from corral._rate_limit import LocalLimiter, parse_rate
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("20/s", 20, 1.0),
        ("20/second", 20, 1.0),
        ("100 per minute", 100, 60.0),
        ("5/10s", 5, 10.0),
        ("3/2hours", 3, 7200.0),
        ("1/day", 1, 86400.0),
    ],
)
def test_rates_are_read_in_the_usual_forms(text: str, count: int, period: float) -> None:
    spec = parse_rate(text)
    assert (spec.count, spec.period) == (count, period)


@pytest.mark.parametrize("text", ["", "20", "0/s", "20/ms", "20/fortnight", "-1/s", 20, None])
def test_unreadable_rates_are_a_clear_value_error(text: object) -> None:
    with pytest.raises(ValueError, match="cannot read rate"):
        parse_rate(text)


def test_a_burst_of_the_budget_then_starts_are_spaced_evenly() -> None:
    now = [100.0]
    limiter = LocalLimiter(parse_rate("4/s"), clock=lambda: now[0])
    waits = [limiter.reserve("k") for _ in range(7)]
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0]
    assert waits[4:] == pytest.approx([0.25, 0.5, 0.75])
    now[0] += 2.0  # idle for longer than the period: the full burst is back
    assert [limiter.reserve("k") for _ in range(4)] == [0.0] * 4
    assert limiter.reserve("other") == 0.0  # buckets are independent


def test_idle_buckets_are_forgotten() -> None:
    now = [0.0]
    limiter = LocalLimiter(parse_rate("1/s"), clock=lambda: now[0])
    for n in range(5000):
        limiter.reserve(n)
    now[0] += 10.0
    limiter.reserve("fresh")  # a reserve past the size mark prunes stale buckets
    for n in range(1100):
        limiter.reserve(("again", n))
    assert len(limiter._tat) < 2200


def test_rate_limit_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="key must be callable"):
        middleware.rate_limit("1/s", key="user")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"store= must be a corral\.RedisStore"):
        middleware.rate_limit("1/s", store=object())  # type: ignore[arg-type]


async def _start_times(rate: str, keys: list[str], registry: CollectorRegistry) -> list[float]:
    starts: dict[int, float] = {}

    async def job(n: int, key: str) -> None:
        starts[n] = anyio.current_time()

    limit = middleware.rate_limit(rate, key=lambda info: info.args[1], registry=registry)
    async with TaskQueue(
        "limited", workers=4, capacity=100, middleware=[limit], registry=registry
    ) as q:
        began = anyio.current_time()
        for n, key in enumerate(keys):
            q.submit_nowait(job, n, key)
    return [starts[n] - began for n in range(len(keys))]


async def test_starts_beyond_the_budget_wait_and_are_counted() -> None:
    registry = CollectorRegistry()
    offsets = await _start_times("5/s", ["a"] * 8, registry)
    assert max(offsets[:5]) < 0.15  # the burst starts at once
    # the 6th..8th start one interval (0.2 s) apart at the earliest
    for n, earliest in zip(range(5, 8), (0.2, 0.4, 0.6), strict=True):
        assert offsets[n] >= earliest - 0.02, offsets
    labels = {"queue": "limited", "task": "job"}
    assert registry.get_sample_value("corral_tasks_throttled_total", labels) == 3
    waited = registry.get_sample_value("corral_task_throttle_seconds_total", labels)
    # each waits for its slot from when its worker reserved it: never more than the slots
    assert waited is not None and 0 < waited <= 0.2 + 0.4 + 0.6 + 0.05


async def test_each_key_has_its_own_budget() -> None:
    registry = CollectorRegistry()
    offsets = await _start_times("3/10s", ["a", "b", "c"] * 3, registry)
    assert max(offsets) < 0.5  # 3 per key fits every key's burst: nobody waited
    assert (
        registry.get_sample_value(
            "corral_tasks_throttled_total", {"queue": "limited", "task": "job"}
        )
        is None
    )


async def test_a_key_function_returning_an_unhashable_value_fails_the_task() -> None:
    limit = middleware.rate_limit("5/s", key=lambda info: [info.name])

    async def job() -> None:
        pass

    async with TaskQueue("unhashable", workers=1, capacity=10, middleware=[limit]) as q:
        handle = q.submit_nowait(job)
    with pytest.raises(TypeError, match="unhashable list"):
        await handle


FLEET_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import anyio
    from corral import RedisStore, TaskQueue, middleware

    url, stream, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    async def main() -> None:
        store = RedisStore(url, stream)
        starts = []

        async def job(n: int) -> None:
            starts.append(time.time())

        limit = middleware.rate_limit("4/s", store=store, key=lambda info: "shared")
        async with TaskQueue("fleet-limited", workers=2, capacity=100, middleware=[limit]) as q:
            for n in range(count):
                q.submit_nowait(job, n)
        with open(out, "w") as f:
            json.dump(starts, f)

    anyio.run(main)
    """
)


def test_a_store_backed_limit_is_shared_by_every_process(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    script = tmp_path / "fleet_worker.py"
    script.write_text(FLEET_WORKER)
    outs = [tmp_path / f"starts-{n}.json" for n in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), redis_server.url, f"rate:{tmp_path.name}", str(out), "6"]
        )
        for out in outs
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    starts = sorted(t for out in outs for t in json.loads(out.read_text()))
    assert len(starts) == 12
    # A moving window of 4 per second, shared: any 5 consecutive starts span ~1 s (less
    # the lag between taking a start and the job recording it, on a busy machine).
    # Without sharing, the two processes would start 8 at once.
    for first, fifth in zip(starts, starts[4:], strict=False):
        assert fifth - first >= 0.6, starts
    assert starts[-1] - starts[0] >= 1.7
