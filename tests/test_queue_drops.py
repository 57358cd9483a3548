"""No silent loss: tasks a shutdown drops are logged, counted and reported to observers."""

from __future__ import annotations

import logging

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


class Outcomes(corral.Observer):
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def on_complete(self, task: corral.TaskInfo, outcome: str, error: BaseException | None) -> None:
        if outcome == "cancelled":
            assert isinstance(error, corral.TaskCancelled)
            self.cancelled.append(task.name)


async def send_email(n: int) -> None:
    await anyio.sleep(0.05)


async def charge(n: int) -> None:
    await anyio.sleep(0.05)


def dropped(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value(
        "corral_tasks_dropped_total", {"queue": "mail", "reason": reason}
    )


async def test_a_drain_timeout_logs_counts_and_reports_every_dropped_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    outcomes = Outcomes()
    caplog.set_level(logging.WARNING, logger="corral.queue")
    async with corral.TaskQueue(
        "mail", workers=2, capacity=100, registry=registry, observers=[outcomes]
    ) as q:
        handles = [q.submit_nowait(send_email, i) for i in range(30)]
        handles += [q.submit_nowait(charge, i) for i in range(10)]
        assert dropped(registry, "drain_timeout") == 0
        await q.aclose(timeout=0.12)
    lost = [h for h in handles if h.cancelled()]
    ran = [h for h in handles if h.done() and not h.cancelled()]
    assert len(lost) + len(ran) == 40 and len(lost) >= 20
    never_started = [h for h in lost if "shutdown" in str(h.exception())]
    by_name = {"send_email": 0, "charge": 0}
    for h in never_started:
        by_name[h.name] += 1
    assert dropped(registry, "drain_timeout") == len(never_started)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert f"{len(never_started)} accepted task(s)" in message
    assert "queue 'mail'" in message and "drain timeout" in message
    for name, count in by_name.items():
        if count:
            assert f"{name} x{count}" in message
    assert sorted(outcomes.cancelled) == sorted(h.name for h in lost)


async def test_leaving_with_an_error_counts_the_drop_as_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    caplog.set_level(logging.WARNING, logger="corral.queue")
    with pytest.raises(KeyError):
        async with corral.TaskQueue("mail", workers=1, capacity=10, registry=registry) as q:
            for i in range(5):
                q.submit_nowait(send_email, i)
            await anyio.sleep(0)
            raise KeyError("request failed")
    assert dropped(registry, "shutdown") == 4 or dropped(registry, "shutdown") == 5
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "send_email x" in warning.getMessage()


async def test_a_clean_drain_logs_and_counts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    caplog.set_level(logging.WARNING, logger="corral.queue")
    async with corral.TaskQueue("mail", workers=4, capacity=10, registry=registry) as q:
        for i in range(8):
            q.submit_nowait(send_email, i)
    assert dropped(registry, "drain_timeout") is None or dropped(registry, "drain_timeout") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
