"""End to end: the example service under overload and shutdown, driven in-process.

The app runs its real ASGI lifespan (asgi-lifespan's LifespanManager) and is called through
httpx's ASGI transport, so requests go through Starlette, the corral default queue and the
real Prometheus registry exactly as under a server. Starlette, httpx and asgi-lifespan all
run on anyio, so these tests run on both asyncio and trio.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import sentry_sdk
from asgi_lifespan import LifespanManager
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "service"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corral_example_service", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


class Orders:
    """A job the test holds at a gate: it records what started and what finished."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.started: list[str] = []
        self.done: list[str] = []
        self.first_started = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, order_id: str) -> None:
        self.started.append(order_id)
        if len(self.started) == self.hold:
            self.first_started.set()
        await self.release.wait()
        await anyio.sleep(0.005)  # still busy when shutdown begins: the drain must wait
        self.done.append(order_id)


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of ``name`` over every sample whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


@pytest.mark.anyio
async def test_overload_answers_429_and_shutdown_drains_accepted_orders() -> None:
    registry = CollectorRegistry()
    workers, capacity = 2, 3
    orders = Orders(hold=workers)
    app = example.create_app(
        job=orders,
        workers=workers,
        capacity=capacity,
        retry_after_seconds=7,
        registry=registry,
        environ={},
    )
    async with LifespanManager(app) as manager, client_for(manager.app) as client:
        running = [await client.post(f"/orders/{i}") for i in range(workers)]
        await orders.first_started.wait()  # both workers now hold an order
        queued = [await client.post(f"/orders/{i}") for i in range(workers, workers + capacity)]
        for response in running + queued:
            assert response.status_code == 202, response.text
            assert response.json()["order"] in {str(i) for i in range(workers + capacity)}

        shed = await client.post("/orders/overflow")
        assert shed.status_code == 429
        assert shed.headers["Retry-After"] == "7"
        assert "retry" in shed.json()["error"]

        exposition = await client.get("/metrics")
        assert exposition.status_code == 200
        assert exposition.headers["content-type"].startswith("text/plain")
        samples = scrape(exposition.text)
        queue = {"queue": example.QUEUE_NAME}
        assert total(samples, "corral_queue_workers", **queue) == workers
        assert total(samples, "corral_queue_busy_workers", **queue) == workers
        assert total(samples, "corral_queue_capacity", **queue) == capacity
        assert total(samples, "corral_queue_depth", **queue) == capacity
        assert total(samples, "corral_tasks_submitted_total", **queue) == workers + capacity
        assert total(samples, "corral_tasks_rejected_total", **queue) == 1
        assert total(samples, "corral_tasks_completed_total", **queue) == 0

        orders.release.set()
    # The lifespan has shut down: the queue drained instead of dropping queued orders.
    assert sorted(orders.done) == sorted(str(i) for i in range(workers + capacity))
    assert "overflow" not in orders.started
    samples = scrape(generate_latest(registry).decode())
    assert total(samples, "corral_tasks_completed_total", outcome="success") == workers + capacity
    assert total(samples, "corral_tasks_completed_total", outcome="cancelled") == 0
    assert total(samples, "corral_queue_depth") == 0
    assert total(samples, "corral_task_duration_seconds_count") == workers + capacity

    async with client_for(app) as client:
        after = await client.post("/orders/late")
    assert after.status_code == 503


@pytest.mark.anyio
async def test_the_shipped_job_sends_receipts_in_the_background() -> None:
    registry = CollectorRegistry()
    app = example.create_app(registry=registry, environ={})
    async with LifespanManager(app) as manager, client_for(manager.app) as client:
        responses = [await client.post(f"/orders/{i}") for i in range(3)]
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert len({r.json()["task"] for r in responses}) == 3
    success = registry.get_sample_value(
        "corral_tasks_completed_total",
        {"queue": example.QUEUE_NAME, "task": "send_receipt", "outcome": "success"},
    )
    assert success == 3


class CapturingTransport(Transport):
    """A real sentry_sdk transport that keeps events in memory instead of sending them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                self.events.append(item.payload.json)


@pytest.fixture
def sentry_off_afterwards() -> Iterator[None]:
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.Scope.get_global_scope().set_client(None)


@pytest.mark.anyio
async def test_failed_order_is_reported_to_sentry_when_dsn_is_set(
    sentry_off_afterwards: None,
) -> None:
    async def declined(order_id: str) -> None:
        raise ValueError(f"card declined for order {order_id}")

    transport = CapturingTransport()
    registry = CollectorRegistry()
    app = example.create_app(
        job=declined,
        registry=registry,
        environ={"SENTRY_DSN": "http://public@127.0.0.1:9/1", "SENTRY_ENVIRONMENT": "test"},
        # Integrations off: the test must not patch Starlette for the rest of the process.
        sentry_options={"transport": transport, "default_integrations": False},
    )
    async with LifespanManager(app) as manager, client_for(manager.app) as client:
        assert sentry_sdk.get_client().is_active()
        response = await client.post("/orders/7")
        assert response.status_code == 202
    # Shutdown drained the queue, so the failure has been counted and reported.
    samples = scrape(generate_latest(registry).decode())
    assert total(samples, "corral_tasks_completed_total", outcome="error") == 1
    assert total(samples, "corral_tasks_completed_total", outcome="success") == 0

    (event,) = transport.events
    assert event["environment"] == "test"
    assert event["tags"]["corral.queue"] == example.QUEUE_NAME
    assert event["tags"]["corral.task"].endswith("declined")
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "card declined for order 7"


@pytest.mark.anyio
async def test_sentry_stays_off_without_a_dsn() -> None:
    assert not example.init_sentry({})
    app = example.create_app(registry=CollectorRegistry(), environ={})
    async with LifespanManager(app):
        assert not sentry_sdk.get_client().is_active()


def test_the_example_passes_the_linter(tmp_path: Path) -> None:
    if importlib.util.find_spec("corral.lint_rules.cli") is None:
        pytest.skip("the linter (corral.lint_rules.cli) has not landed on this branch yet")

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral.lint_rules.cli", "check", str(path)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )

    clean = check(EXAMPLE)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # The same check must fail on the raw primitive the example avoids, or the pass means nothing.
    raw = tmp_path / "service"
    shutil.copytree(EXAMPLE, raw)
    app_py = raw / "app.py"
    app_py.write_text(
        app_py.read_text(encoding="utf-8").replace(
            "handle = corral.spawn(job, order_id)",
            "handle = asyncio.create_task(job(order_id))",
        )
        + "\nimport asyncio\n",
        encoding="utf-8",
    )
    flagged = check(raw)
    assert flagged.returncode == 1, flagged.stdout + flagged.stderr
    assert "CRL201" in flagged.stdout
