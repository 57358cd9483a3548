"""Prometheus metrics: values after a known workload, scrape-time gauges, the source API."""

from __future__ import annotations

import gc
import logging
import shutil
import subprocess
from collections.abc import Iterable

import anyio
import corral
import pytest
from corral import metrics
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

pytestmark = pytest.mark.anyio


async def ok() -> None:
    await anyio.sleep(0)


async def fail() -> None:
    raise ValueError("x")


async def test_metric_values_after_a_known_workload() -> None:
    registry = CollectorRegistry()
    gate = anyio.Event()
    started = anyio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    q = corral.TaskQueue(
        "work", workers=2, capacity=3, registry=registry, on_error=[lambda _t, _e: None]
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"queue": "work", **labels})

    async with q:
        for _ in range(5):
            await q.submit_nowait(ok)
        for _ in range(2):
            with pytest.raises(ValueError):
                await q.submit_nowait(fail)
        q.submit_nowait(hold)
        await started.wait()
        queued = [q.submit_nowait(hold) for _ in range(3)]
        for _ in range(4):
            with pytest.raises(corral.QueueFull):
                q.submit_nowait(ok)
        # Gauges are read at scrape time.
        assert value("corral_queue_depth") == 3  # no checkpoint yet: the idle worker waits
        assert value("corral_queue_busy_workers") == 1
        assert value("corral_queue_capacity") == 3
        assert value("corral_queue_workers") == 2
        queued[-1].cancel()
        assert value("corral_queue_depth") == 2
        gate.set()
        await queued[-2]
        assert value("corral_queue_depth") == 0
        assert value("corral_queue_busy_workers") == 0

    assert value("corral_queue_depth") is None  # closed queues report counters only
    assert value("corral_tasks_submitted_total", task="ok") == 5
    assert value("corral_tasks_submitted_total", task="fail") == 2
    assert value("corral_tasks_submitted_total", task="hold") == 4
    assert value("corral_tasks_rejected_total", task="ok") == 4
    assert value("corral_tasks_completed_total", task="ok", outcome="success") == 5
    assert value("corral_tasks_completed_total", task="fail", outcome="error") == 2
    assert value("corral_tasks_completed_total", task="hold", outcome="success") == 3
    assert value("corral_tasks_completed_total", task="hold", outcome="cancelled") == 1
    assert value("corral_task_duration_seconds_count", task="ok") == 5
    assert value("corral_task_duration_seconds_count", task="fail") == 2
    assert value("corral_task_wait_seconds_count", task="hold") == 3  # the cancelled never started
    duration_sum = value("corral_task_duration_seconds_sum", task="hold")
    assert duration_sum is not None and duration_sum > 0
    inf = value("corral_task_duration_seconds_bucket", task="ok", le="+Inf")
    assert inf == 5
    assert q.stats().submitted == 11


async def test_histogram_buckets_place_slow_tasks_correctly() -> None:
    registry = CollectorRegistry()

    async def slow() -> None:
        await anyio.sleep(0.03)

    async with corral.TaskQueue("slow", workers=1, capacity=5, registry=registry) as q:
        await q.submit_nowait(slow)

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(
            "corral_task_duration_seconds_bucket", {"queue": "slow", "task": "slow", "le": le}
        )

    assert bucket("0.025") == 0
    assert bucket("0.1") == 1
    assert bucket("+Inf") == 1


async def test_queues_sharing_a_registry_share_one_collector() -> None:
    registry = CollectorRegistry()
    async with (
        corral.TaskQueue("a", workers=1, capacity=1, registry=registry) as a,
        corral.TaskQueue("b", workers=1, capacity=1, registry=registry) as b,
    ):
        await a.submit_nowait(ok)
        await b.submit_nowait(ok)
        await b.submit_nowait(ok)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE corral_tasks_submitted_total counter") == 1
    for queue, n in (("a", 1), ("b", 2)):
        assert (
            registry.get_sample_value(
                "corral_tasks_submitted_total", {"queue": queue, "task": "ok"}
            )
            == n
        )
    assert metrics.collector_for(registry) is metrics.collector_for(registry)


async def test_default_registry_is_used_when_none_is_given(anyio_backend: str) -> None:
    name = f"metrics-default-registry-{anyio_backend}"
    async with corral.TaskQueue(name, workers=1, capacity=1) as q:
        await q.submit_nowait(ok)
        assert REGISTRY.get_sample_value("corral_queue_capacity", {"queue": name}) == 1
    labels = {"queue": name, "task": "ok"}
    assert REGISTRY.get_sample_value("corral_tasks_submitted_total", labels) == 1
    # A closed queue keeps its counters (they stay monotonic) but no longer reports gauges.
    assert REGISTRY.get_sample_value("corral_queue_capacity", {"queue": name}) is None


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_exposition_passes_promtool() -> None:
    registry = CollectorRegistry()
    async with corral.TaskQueue("lint", workers=1, capacity=2, registry=registry) as q:
        await q.submit_nowait(ok)
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        check=False,
    )
    problems = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, problems


class GroupSource:
    """What another component (e.g. a TaskGroup) plugs into the shared collector."""

    def __init__(self, name: str, active: int) -> None:
        self.name = name
        self.active = active

    def metric_families(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("corral_groups_active", "Open groups", labels=["group"])
        gauge.add_metric([self.name], self.active)
        yield gauge


def test_sources_are_scraped_merged_and_dropped_when_collected() -> None:
    registry = CollectorRegistry()
    collector = metrics.collector_for(registry)
    first, second, same_name = GroupSource("x", 2), GroupSource("y", 5), GroupSource("x", 1)
    collector.add_source(first)
    collector.add_source(second)
    collector.add_source(same_name)
    assert registry.get_sample_value("corral_groups_active", {"group": "x"}) == 3  # summed
    assert registry.get_sample_value("corral_groups_active", {"group": "y"}) == 5
    collector.remove_source(second)
    assert registry.get_sample_value("corral_groups_active", {"group": "y"}) is None
    del same_name
    gc.collect()
    assert registry.get_sample_value("corral_groups_active", {"group": "x"}) == 2
    pinned = GroupSource("z", 7)
    collector.add_source(pinned, weak=False)
    del pinned
    gc.collect()
    assert registry.get_sample_value("corral_groups_active", {"group": "z"}) == 7


def test_a_broken_source_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def metric_families(self) -> Iterable[Metric]:
            raise RuntimeError("scrape failed")

    class Conflicting:
        def metric_families(self) -> Iterable[Metric]:
            yield metrics.histogram_family("corral_groups_active", "wrong type", [], [])

    registry = CollectorRegistry()
    collector = metrics.collector_for(registry)
    good, broken, conflicting = GroupSource("g", 1), Broken(), Conflicting()
    collector.add_source(good)
    collector.add_source(broken)
    collector.add_source(conflicting)
    caplog.set_level(logging.WARNING, logger="corral.metrics")
    assert registry.get_sample_value("corral_groups_active", {"group": "g"}) == 1
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "failed" in messages and "keeping the first" in messages
    with pytest.raises(TypeError, match="no metric_families"):
        collector.add_source(object())  # type: ignore[arg-type]


def test_buckets_observe_merge_and_render_cumulatively() -> None:
    a = metrics.Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        a.observe(value)
    b = metrics.Buckets((0.1, 1.0))
    b.observe(0.2)
    a.merge(b)
    assert a.counts == [2, 2, 1] and a.count == 5
    assert a.total == pytest.approx(3.85)
    family = metrics.histogram_family("h_seconds", "doc", ["l"], [(["v"], a)])
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("h_seconds_bucket", "0.1")] == 2
    assert samples[("h_seconds_bucket", "1.0")] == 4
    assert samples[("h_seconds_bucket", "+Inf")] == 5
    assert samples[("h_seconds_count", None)] == 5
    with pytest.raises(ValueError, match="different bucket bounds"):
        a.merge(metrics.Buckets((1.0,)))
