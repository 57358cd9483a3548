"""Every metric the dashboard and the alerts read is produced by the real runtime.

A known workload runs against a TaskQueue (successes, a failure, a retry, a cancellation,
a rejection), a TaskGroup and a durable queue on a real SQLite file; the registry's text
exposition (what Prometheus scrapes) is parsed, and every metric name referenced by a
dashboard query or an alert expression must be there, with the labels the query uses.
The workload's values are checked too, so the names are not just present but mean what
the operating guide says.

Then promtool evaluates the artifacts on series built from real scrapes: the shipped
alert rules must fire on queues that are really stuck, backlogged, shedding or failing
(and stay quiet on a healthy one), and every dashboard query must return data.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_observability_artifacts import (
    ALERTS,
    REQUIRED_ALERTS,
    alert_expressions,
    dashboard_expressions,
    family_name,
    promtool,
    referenced_samples,
)

#: Labels Prometheus attaches at scrape time; never part of the exposition itself.
TARGET_LABELS = {"job", "instance"}


@dataclass
class Exposition:
    """Everything seen over several scrapes: sample names, their labels, family types."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    last: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def scrape(self, registry: CollectorRegistry) -> None:
        text = generate_latest(registry).decode()
        self.last = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                per_label = self.values.setdefault(sample.name, {})
                for label, value in sample.labels.items():
                    per_label.setdefault(label, set()).add(value)
                self.last[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """Sum of ``name`` in the last scrape over samples whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.last.items() if n == name and wanted <= ls)


# -- the workload ---------------------------------------------------------------------------
async def queue_workload(registry: CollectorRegistry, seen: Exposition) -> None:
    gate = anyio.Event()
    running = anyio.Event()
    flaky_calls = 0

    async def hold() -> None:
        running.set()
        await gate.wait()

    async def ok() -> None:
        await anyio.sleep(0)

    async def boom() -> None:
        raise ValueError("boom")

    async def flaky() -> str:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    retry = corral.middleware.retry(2, backoff=0, retry_on=ConnectionError)
    async with corral.TaskQueue(
        "obs", workers=1, capacity=2, registry=registry, middleware=[retry]
    ) as q:
        held = q.submit_nowait(hold)
        await running.wait()
        queued = [q.submit_nowait(ok), q.submit_nowait(ok)]
        with pytest.raises(corral.QueueFull):
            q.submit_nowait(ok)

        seen.scrape(registry)
        assert seen.value("corral_queue_depth", queue="obs") == 2
        assert seen.value("corral_queue_capacity", queue="obs") == 2
        assert seen.value("corral_queue_workers", queue="obs") == 1
        assert seen.value("corral_queue_busy_workers", queue="obs") == 1

        assert queued[0].cancel()
        gate.set()
        await held
        with pytest.raises(corral.TaskCancelled):
            await queued[0]
        await queued[1]
        failed = q.submit_nowait(boom)
        with pytest.raises(ValueError, match="boom"):
            await failed
        assert await q.submit_nowait(flaky) == "ok"

        seen.scrape(registry)
    q_ = {"queue": "obs"}
    assert seen.value("corral_queue_depth", **q_) == 0
    assert seen.value("corral_queue_busy_workers", **q_) == 0
    assert seen.value("corral_tasks_submitted_total", **q_) == 5
    assert seen.value("corral_tasks_rejected_total", **q_) == 1
    assert seen.value("corral_tasks_completed_total", **q_, outcome="success") == 3
    assert seen.value("corral_tasks_completed_total", **q_, outcome="error") == 1
    assert seen.value("corral_tasks_completed_total", **q_, outcome="cancelled") == 1
    assert seen.value("corral_task_retries_total", **q_) == 1
    assert seen.value("corral_task_duration_seconds_count", **q_) == 4
    assert seen.value("corral_task_wait_seconds_count", **q_) == 4
    assert seen.value("corral_task_wait_seconds_bucket", **q_, le="+Inf") == 4


async def group_workload(registry: CollectorRegistry, seen: Exposition) -> None:
    release = anyio.Event()
    started = 0
    both_running = anyio.Event()

    async def item(n: int) -> int:
        nonlocal started
        started += 1
        if started == 2:
            both_running.set()
        await release.wait()
        return n

    async with corral.TaskGroup(limit=2, name="obs-fanout", registry=registry) as group:
        for n in range(5):
            group.start_soon(item, n)
        await both_running.wait()
        seen.scrape(registry)
        assert seen.value("corral_groups_active", group="obs-fanout") == 1
        assert seen.value("corral_group_inflight", group="obs-fanout") == 5
        release.set()
    seen.scrape(registry)
    assert seen.value("corral_groups_active", group="obs-fanout") == 0
    assert seen.value("corral_group_inflight", group="obs-fanout") == 0
    assert seen.value("corral_group_items_total", group="obs-fanout", outcome="success") == 5


async def double(n: int) -> int:
    """A durable task: module level, so a restarted process finds it by name."""
    return 2 * n


async def poison(n: int) -> None:
    """A durable task that always fails, so it ends in the dead-letter table."""
    raise ValueError(f"poison {n}")


async def durable_workload(registry: CollectorRegistry, seen: Exposition, db: Path) -> None:
    corral.task(name="obs.double")(double)
    no_wait = corral.exponential(0.0, 0.0)
    corral.task(name="obs.poison", retry=corral.Retry(2, backoff=no_wait, jitter="none"))(poison)
    store = corral.SQLiteStore(db)
    async with corral.TaskQueue(
        "obs-durable", workers=1, capacity=10, store=store, registry=registry
    ) as q:
        assert await (await q.submit(double, 21)) == 42
        doomed = await q.submit(poison, 1)
        with pytest.raises(corral.TaskDeadLettered):
            await doomed
        seen.scrape(registry)
    d = {"queue": "obs-durable"}
    assert seen.value("corral_store_pending", **d) == 0
    assert seen.value("corral_store_dead_letters", **d) == 1
    assert seen.value("corral_task_retries_total", **d) == 1
    assert seen.value("corral_store_commit_seconds_count", **d) >= 2
    # poison failed twice: the retried attempt and the final one both count as errors
    assert seen.value("corral_tasks_completed_total", **d, outcome="error") == 2
    assert (
        seen.value("corral_tasks_completed_total", **d, task="obs.double", outcome="success") == 1
    )


def raw_thread() -> None:
    """Start (and join) one thread outside corral: what corral.guard counts."""
    thread = threading.Thread(target=int)  # corral: allow[CRL101] reason="the spawn it counts"
    thread.start()
    thread.join()


async def guard_workload(registry: CollectorRegistry, seen: Exposition) -> None:
    """A guard in count mode over corral's own work (never counted) and one raw thread."""
    with corral.guard.install("count", registry=registry):
        async with corral.TaskQueue("guarded", workers=2, capacity=10, registry=registry) as q:
            await q.submit_nowait(anyio.sleep, 0)
        raw_thread()
        seen.scrape(registry)
    assert seen.value("corral_raw_spawns_total", kind="thread") == 1
    assert seen.value("corral_raw_spawns_total") == 1  # nothing from the queue's workers


# -- the check ------------------------------------------------------------------------------
def selectors(expr: str) -> Iterable[tuple[str, dict[str, str]]]:
    """(sample name, {label: literal value}) for every ``name{...}`` selector in ``expr``."""
    for name, body in re.findall(r"(corral_[a-z_]+)\{([^}]*)\}", expr):
        yield name, dict(re.findall(r'([a-z_]+)\s*=~?\s*"([^"]*)"', body))


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
        labels.update(label.strip() for label in clause.split(",") if label.strip())
    return labels


def problems_with(where: str, expr: str, seen: Exposition) -> list[str]:
    found: list[str] = []
    samples = referenced_samples(expr)
    for sample in sorted(samples):
        if sample not in seen.labels:
            found.append(f"{where}: {sample} is not in the exposition")
        elif sample != family_name(sample) and seen.types.get(family_name(sample)) != "histogram":
            found.append(f"{where}: {sample} is read as a histogram but is not one")
    for name, matchers in selectors(expr):
        for label, literal in matchers.items():
            if name in seen.labels and label not in seen.labels[name]:
                found.append(f"{where}: {name} has no label {label!r}")
            elif "$" not in literal and literal not in seen.values.get(name, {}).get(label, set()):
                found.append(f"{where}: {name} never has {label}={literal!r}")
    if found:
        return found  # label checks below are only meaningful once every name exists
    available = set().union(*(seen.labels[s] for s in samples)) | TARGET_LABELS
    for label in sorted(grouping_labels(expr) - available):
        found.append(f"{where}: groups by {label!r}, which none of its metrics carry")
    return found


#: Which component produces which metric names, so a missing one is named in the failure.
PRODUCERS = {
    "queue": ("corral_queue_", "corral_tasks_", "corral_task_"),
    "group": ("corral_group_", "corral_groups_"),
    "store": ("corral_store_",),
    "guard": ("corral_raw_spawns",),
}


def producer_of(sample: str) -> str:
    for producer, prefixes in PRODUCERS.items():
        if sample.startswith(prefixes):
            return producer
    raise AssertionError(f"{sample}: no corral component is known to produce it")


def test_every_referenced_metric_has_a_known_producer() -> None:
    expressions = dashboard_expressions() + alert_expressions()
    produced = {producer_of(s) for _, expr in expressions for s in referenced_samples(expr)}
    assert produced == set(PRODUCERS)


@pytest.mark.anyio
@pytest.mark.parametrize("producer", sorted(PRODUCERS))
async def test_every_metric_the_dashboard_and_alerts_read_is_exposed(
    producer: str, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    seen = Exposition()
    if producer == "queue":
        await queue_workload(registry, seen)
        # BacklogHigh and QueueStalled also read a durable queue's backlog (corral_store_pending)
        await durable_workload(registry, seen, tmp_path / "tasks.db")
    elif producer == "guard":
        await guard_workload(registry, seen)
    elif producer == "group":
        await group_workload(registry, seen)
    else:
        await durable_workload(registry, seen, tmp_path / "tasks.db")

    expressions = [
        (where, expr)
        for where, expr in dashboard_expressions() + alert_expressions()
        if any(producer_of(s) == producer for s in referenced_samples(expr))
    ]
    assert expressions
    problems = [p for where, expr in expressions for p in problems_with(where, expr, seen)]
    assert not problems, "\n".join(problems)


@pytest.mark.anyio
async def test_a_durable_attempt_that_will_be_retried_is_not_a_success(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    seen = Exposition()
    await durable_workload(registry, seen, tmp_path / "tasks.db")
    # poison ran twice: the first attempt was retried (not finished), the second dead-lettered.
    assert seen.value("corral_tasks_completed_total", task="obs.poison", outcome="success") == 0


def test_the_check_catches_a_misspelt_metric_and_label() -> None:
    seen = Exposition(
        labels={"corral_queue_depth": {"queue"}, "corral_tasks_completed_total": {"queue"}},
        values={"corral_tasks_completed_total": {"queue": {"obs"}}},
        types={"corral_queue_depth": "gauge"},
    )
    assert problems_with("ok", 'sum by (queue) (corral_queue_depth{queue=~"$queue"})', seen) == []
    assert problems_with("x", "corral_queue_depht", seen) == [
        "x: corral_queue_depht is not in the exposition"
    ]
    assert problems_with("x", "corral_queue_depth_bucket", seen) == [
        "x: corral_queue_depth_bucket is not in the exposition"
    ]
    assert problems_with("x", 'corral_tasks_completed_total{outcome="error"}', seen) == [
        "x: corral_tasks_completed_total has no label 'outcome'"
    ]
    assert problems_with("x", "sum by (group) (corral_queue_depth)", seen) == [
        "x: groups by 'group', which none of its metrics carry"
    ]


# -- the alerts, evaluated by promtool on the runtime's own series --------------------------
_durable_gate: dict[str, anyio.Event] = {}


async def durable_hold(n: int) -> None:
    """A durable task that waits until the workload lets it finish."""
    await _durable_gate["open"].wait()


async def troubled_workload(registry: CollectorRegistry, db: Path) -> tuple[str, str]:
    """Queues in each kind of trouble, scraped twice; returns the two expositions.

    Between the scrapes the failing queue fails 3 of 4 tasks, the shedding queue rejects
    twice, a durable task is dead-lettered, the healthy queue completes its work and the
    slow queue (capacity 100) completes 5 of its 100 while 5 more arrive; the stuck queues
    change nothing, which is what stuck means. One of them is store-backed: its backlog is
    in the store (corral_store_pending), not in the in-memory depth.
    """
    never = anyio.Event()
    _durable_gate["open"] = anyio.Event()
    slow_release = anyio.Semaphore(0)
    started: dict[str, anyio.Event] = {}

    async def slow() -> None:
        await slow_release.acquire()

    async def hang(queue: str) -> None:
        started[queue].set()
        await never.wait()

    async def ok() -> None:
        await anyio.sleep(0)

    async def fail() -> None:
        raise RuntimeError("dependency down")

    corral.task(name="obs.poison", retry=corral.Retry(1))(poison)
    corral.task(name="obs.hold")(durable_hold)
    queues = {
        "slow": corral.TaskQueue("slow", workers=1, capacity=100, registry=registry),
        "stuck": corral.TaskQueue("stuck", workers=1, capacity=5, registry=registry),
        "backlog": corral.TaskQueue("backlog", workers=1, capacity=2000, registry=registry),
        "shedding": corral.TaskQueue("shedding", workers=1, capacity=1, registry=registry),
        "failing": corral.TaskQueue("failing", workers=2, capacity=10, registry=registry),
        "healthy": corral.TaskQueue("healthy", workers=4, capacity=100, registry=registry),
    }
    durable = corral.TaskQueue(
        "durable", workers=1, capacity=10, registry=registry, store=corral.SQLiteStore(db)
    )
    durable_stuck = corral.TaskQueue(
        "durable-stuck",
        workers=1,
        capacity=10,
        registry=registry,
        store=corral.SQLiteStore(db.with_name("stuck.db")),
    )
    async with (
        queues["slow"] as slow_q,
        durable_stuck,
        queues["stuck"] as stuck,
        queues["backlog"] as backlog,
        queues["shedding"] as shedding,
        queues["failing"] as failing,
        queues["healthy"] as healthy,
        durable,
    ):
        for name, q in (("stuck", stuck), ("backlog", backlog), ("shedding", shedding)):
            started[name] = anyio.Event()
            q.submit_nowait(hang, name)
            await started[name].wait()
        for _ in range(3):
            stuck.submit_nowait(ok)
        for _ in range(1500):
            backlog.submit_nowait(ok)
        shedding.submit_nowait(ok)
        await healthy.submit_nowait(ok)
        slow_handles = [slow_q.submit_nowait(slow) for _ in range(100)]
        for n in range(8):
            await durable_stuck.submit(durable_hold, n)
        before = generate_latest(registry).decode()

        for _ in range(5):  # 5 complete and 5 more arrive: a steady backlog that drains slowly
            slow_release.release()
        for handle in slow_handles[:5]:
            await handle
        slow_handles += [slow_q.submit_nowait(slow) for _ in range(5)]

        for handle in [failing.submit_nowait(fail) for _ in range(3)]:
            with pytest.raises(RuntimeError):
                await handle
        await failing.submit_nowait(ok)
        for _ in range(2):
            with pytest.raises(corral.QueueFull):
                shedding.submit_nowait(ok)
        for handle in [healthy.submit_nowait(ok) for _ in range(20)]:
            await handle
        with pytest.raises(corral.TaskDeadLettered):
            await (await durable.submit(poison, 1))
        after = generate_latest(registry).decode()
        never.set()
        _durable_gate["open"].set()
        for _ in range(len(slow_handles)):
            slow_release.release()
    return before, after


def as_promtool_series(before: str, after: str, minutes: int) -> list[dict[str, str]]:
    """Each sample as a promtool series that keeps changing as it did between the scrapes.

    The scrapes stand one minute apart, so every series continues its observed per-minute
    change: counters keep their rate, stuck gauges stay flat, a growing gauge keeps growing.
    """
    target = {"job": "svc", "instance": "svc-0:8000"}

    def samples(text: str) -> dict[str, float]:
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted({**s.labels, **target}.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
        return out

    first, second = samples(before), samples(after)
    return [
        {
            "series": series,
            "values": f"{first.get(series, 0.0)!r}+{value - first.get(series, 0.0)!r}x{minutes}",
        }
        for series, value in sorted(second.items())
    ]


@pytest.mark.anyio
async def test_alerts_fire_on_the_runtimes_own_series(tmp_path: Path) -> None:
    """promtool evaluates the shipped rules on series built from real scrapes.

    Annotations are dropped from a copy of the rules: their text is unit-tested in
    corral-alerts.test.yml; here the question is which alerts fire, with which labels.
    """
    registry = CollectorRegistry()
    # under a guard: corral's own work, however troubled, is never raw concurrency
    with corral.guard.install("count", registry=registry):
        before, after = await troubled_workload(registry, tmp_path / "tasks.db")

    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)

    def fired(alert: str, severity: str, *queues: str, instance: bool = True) -> dict[str, Any]:
        where = {"job": "svc", **({"instance": "svc-0:8000"} if instance else {})}
        return {
            "eval_time": "20m",
            "alertname": alert,
            "exp_alerts": [
                {"exp_labels": {"severity": severity, **where, "queue": q}} for q in queues
            ],
        }

    expected = [
        fired("QueueSaturated", "warning", "stuck", "backlog", "shedding", "slow", "durable-stuck"),
        # the store-backed queue's depth stays 0: its backlog is corral_store_pending
        fired("QueueStalled", "critical", "stuck", "backlog", "shedding", "durable-stuck"),
        # capacity 100, 95 waiting, 5 a minute: 19 minutes to drain (1000 queued would never be)
        fired("BacklogHigh", "warning", "slow"),
        fired("QueueRejecting", "warning", "shedding", instance=False),
        fired("TaskFailureRateHigh", "warning", "failing", "durable", instance=False),
        fired("DeadLettersGrowing", "warning", "durable"),
        {"eval_time": "20m", "alertname": "RawConcurrencyDetected", "exp_alerts": []},
    ]
    assert {e["alertname"] for e in expected} == REQUIRED_ALERTS
    result = run_promtool_tests(tmp_path, rules, as_promtool_series(before, after, 30), expected)
    assert result.returncode == 0, result.stdout + result.stderr


def run_promtool_tests(
    where: Path,
    rules: dict[str, Any],
    series: list[dict[str, str]],
    checks: list[dict[str, Any]],
) -> subprocess.CompletedProcess[str]:
    (where / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    (where / "tests.yml").write_text(yaml.safe_dump(tests, width=1000))
    return subprocess.run(
        [promtool(), "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=where,
    )


@pytest.mark.anyio
async def test_every_dashboard_query_shows_data_for_a_real_workload(tmp_path: Path) -> None:
    """Each panel query, as Grafana would send it, returns series on real scrapes.

    Every query becomes an ``absent(...)`` alert, and promtool must see none of them fire.
    A query that selects nothing (a wrong label value, a metric that is never emitted in
    that shape) would leave its panel empty and fail here.
    """
    registry = CollectorRegistry()
    await group_workload(registry, Exposition())
    with corral.guard.install("count", registry=registry):
        raw_thread()  # the raw spawn panels need a series
        before, after = await troubled_workload(registry, tmp_path / "tasks.db")
    queries = dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "alert": f"EmptyPanelQuery{i}",
                        "expr": "absent("
                        + expr.replace("$__rate_interval", "5m")
                        .replace("$queue", ".*")
                        .replace("$group", ".*")
                        .replace("$package", ".*")
                        + ")",
                        "labels": {"query": where},
                    }
                    for i, (where, expr) in enumerate(queries)
                ],
            }
        ]
    }
    checks = [
        {"eval_time": "10m", "alertname": f"EmptyPanelQuery{i}", "exp_alerts": []}
        for i in range(len(queries))
    ]
    result = run_promtool_tests(tmp_path, rules, as_promtool_series(before, after, 30), checks)
    assert result.returncode == 0, result.stdout + result.stderr
