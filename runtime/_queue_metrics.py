"""The Prometheus families of one TaskQueue, built at scrape time from plain counters.

Gauges (depth, busy workers) are read from the queue's state; counters and histograms
come from the per-task-name tallies the workers keep (:class:`corral._job.Tally`), so
the hot path never touches prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .metrics import histogram_family

if TYPE_CHECKING:
    from .queue import TaskQueue

__all__ = ["queue_families"]


def queue_families(queue: TaskQueue) -> Iterator[Metric]:
    """Every family of ``queue`` (see README "Metrics" for names and labels)."""
    q = [queue.name]
    gauges = (
        ()
        if queue._is_closed()
        else (
            ("corral_queue_depth", "Tasks accepted and not yet started", queue._depth),
            ("corral_queue_capacity", "Most tasks that may wait in the queue", queue.capacity),
            ("corral_queue_workers", "Worker tasks of the queue", queue.workers),
            ("corral_queue_busy_workers", "Workers running a task now", queue._busy()),
        )
    )
    for metric, doc, value in gauges:
        gauge = GaugeMetricFamily(metric, doc, labels=["queue"])
        gauge.add_metric(q, value)
        yield gauge
    tallies = list(queue._tallies.values())
    labels = ["queue", "task"]
    submitted = CounterMetricFamily(
        "corral_tasks_submitted_total", "Tasks accepted by the queue", labels=labels
    )
    rejected = CounterMetricFamily(
        "corral_tasks_rejected_total", "Submissions refused (full or closed)", labels=labels
    )
    retries = CounterMetricFamily(
        "corral_task_retries_total", "Retries made by the retry middleware", labels=labels
    )
    completed = CounterMetricFamily(
        "corral_tasks_completed_total",
        "Tasks finished, by outcome (success, error, cancelled)",
        labels=[*labels, "outcome"],
    )
    for t in tallies:
        submitted.add_metric([queue.name, t.name], t.submitted)
        rejected.add_metric([queue.name, t.name], t.rejected)
        retries.add_metric([queue.name, t.name], t.retries)
        completed.add_metric([queue.name, t.name, "success"], t.success)
        completed.add_metric([queue.name, t.name, "error"], t.error)
        completed.add_metric([queue.name, t.name, "cancelled"], t.cancelled)
    dropped = CounterMetricFamily(
        "corral_tasks_dropped_total",
        "Accepted tasks that never ran: the drain timed out or the queue was stopped",
        labels=["queue", "reason"],
    )
    for reason, count in list(queue._dropped.items()):
        dropped.add_metric([queue.name, reason], count)
    yield submitted
    yield rejected
    yield completed
    yield retries
    yield dropped
    yield histogram_family(
        "corral_task_duration_seconds",
        "Time a task ran (all attempts)",
        labels,
        (((queue.name, t.name), t.duration) for t in tallies),
    )
    yield histogram_family(
        "corral_task_wait_seconds",
        "Time a task waited between submit and start",
        labels,
        (((queue.name, t.name), t.wait) for t in tallies),
    )
