"""Durable tracing: the W3C trace context travels with the stored task, so an attempt that
runs after a restart (a new store on the same SQLite file) or on another Redis consumer
(an expired lease re-claimed) is still linked to the span of the original submit.

Real SQLite files, the real redis-server fixture, the SDK's in-memory exporter; each test
passes its own provider to :class:`corral.otel.Tracing`, so no global state is touched.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
from corral import RedisStore, SQLiteStore
from corral.otel import Tracing
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from storehelpers import StoreFactory, store_factory

pytestmark = pytest.mark.anyio

release: dict[str, anyio.Event] = {}
started: dict[str, anyio.Event] = {}
calls: dict[str, int] = {}


@corral.task(name="otel_durable.block")
async def block(label: str) -> str:
    """Waits for its release event (or forever when there is none in this run)."""
    calls[label] = calls.get(label, 0) + 1
    if label in started:
        started[label].set()
    event = release.get(label)
    if event is None:
        await anyio.sleep_forever()
    else:
        await event.wait()
    return label


@corral.task(name="otel_durable.once_stuck")
async def once_stuck(label: str) -> str:
    """The first attempt hangs (its worker 'dies'); every later attempt returns."""
    calls[label] = calls.get(label, 0) + 1
    if calls[label] == 1:
        started[label].set()
        await anyio.sleep_forever()
    return label


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def traced(tracer_provider: TracerProvider) -> dict[str, Any]:
    tracing = Tracing(tracer_provider)
    return {"observers": [tracing], "middleware": [tracing.middleware]}


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def send_span_of(spans: tuple[ReadableSpan, ...], task_id: str) -> ReadableSpan:
    [span] = [
        s
        for s in named(spans, "send q")
        if s.attributes is not None and s.attributes["messaging.message.id"] == task_id
    ]
    return span


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return store_factory(request, tmp_path, "otel")


async def test_a_replay_after_restart_links_to_the_original_submit(
    make_store: StoreFactory,
) -> None:
    release.clear()
    started.clear()
    before, exporter_before = provider()
    tracer = before.get_tracer("test")
    started["first"] = anyio.Event()
    queue = corral.TaskQueue(
        "q",
        workers=1,
        capacity=10,
        store=make_store(),
        registry=CollectorRegistry(),
        **traced(before),
    )
    async with queue as q:
        blocker = await q.submit(block, "first")  # holds the only worker
        await started["first"].wait()
        with tracer.start_as_current_span("POST /reports") as request:
            target = await q.submit(block, "target")
        await q.aclose(timeout=0.2)  # the process stops: "target" never started
    spans = exporter_before.get_finished_spans()
    send = send_span_of(spans, target.id)
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert named(spans, "process q") == [] or all(
        s.attributes is not None and s.attributes["messaging.message.id"] == blocker.id
        for s in named(spans, "process q")
    )

    async with make_store() as inspect:  # what `corral tasks show --json` prints
        stored = await inspect.get(target.id)
    assert stored is not None
    expected = f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}-"
    (headers,) = [stored.to_json()["headers"]]
    assert list(headers) == ["traceparent"] and headers["traceparent"].startswith(expected)

    after, exporter_after = provider()  # a new process: its own provider and store
    release["first"] = anyio.Event()
    release["target"] = anyio.Event()
    release["first"].set()
    release["target"].set()
    async with corral.TaskQueue(
        "q",
        workers=1,
        capacity=10,
        store=make_store(),
        registry=CollectorRegistry(),
        **traced(after),
    ) as q:
        with anyio.fail_after(20):
            while calls.get("target", 0) == 0:
                await anyio.sleep(0.02)
    spans = exporter_after.get_finished_spans()
    assert named(spans, "send q") == []  # a replay makes no second producer span
    [process] = [
        s
        for s in named(spans, "process q")
        if s.attributes is not None and s.attributes["messaging.message.id"] == target.id
    ]
    assert process.parent is None  # a new root ...
    [link] = process.links  # ... linked to the submit before the restart
    assert link.context.trace_id == send.context.trace_id
    assert link.context.span_id == send.context.span_id
    assert link.context.trace_id == request.get_span_context().trace_id


async def test_a_redis_consumer_that_reclaims_an_expired_lease_links_to_the_submit(
    redis_server: Any,
) -> None:
    calls.clear()
    started.clear()
    started["stuck"] = anyio.Event()
    stream = f"otel-reclaim:{uuid.uuid4().hex[:12]}"
    first, exporter_first = provider()
    second, exporter_second = provider()
    tracer = first.get_tracer("test")
    a = RedisStore(redis_server.url, stream=stream, consumer="a", visibility_timeout=0.6)
    b = RedisStore(redis_server.url, stream=stream, consumer="b", visibility_timeout=0.6)
    async with corral.TaskQueue(
        "q", workers=1, capacity=10, store=a, registry=CollectorRegistry(), **traced(first)
    ) as qa:
        with tracer.start_as_current_span("POST /orders") as request:
            handle = await qa.submit(once_stuck, "stuck")
        await started["stuck"].wait()
        a._leases.clear()  # consumer a stops renewing its lease, as if its process hung
        async with corral.TaskQueue(
            "q", workers=1, capacity=10, store=b, registry=CollectorRegistry(), **traced(second)
        ):
            with anyio.fail_after(20):
                while await b.get(handle.id) is not None:  # b re-claims it and completes it
                    await anyio.sleep(0.05)
        await qa.aclose(timeout=0.1)
    assert calls["stuck"] == 2
    send = send_span_of(exporter_first.get_finished_spans(), handle.id)
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    spans = exporter_second.get_finished_spans()
    assert named(spans, "send q") == []
    [process] = named(spans, "process q")
    assert process.attributes is not None and process.attributes["corral.task.attempt"] == 2
    [link] = process.links
    assert (link.context.trace_id, link.context.span_id) == (
        send.context.trace_id,
        send.context.span_id,
    )


async def test_the_stored_context_is_w3c_with_tracestate(tmp_path: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    tracer_provider, exporter = provider()
    incoming = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    parent = trace.set_span_in_context(NonRecordingSpan(incoming))
    db = tmp_path / "tasks.db"
    async with corral.TaskQueue(
        "q",
        workers=1,
        capacity=10,
        store=SQLiteStore(db),
        registry=CollectorRegistry(),
        **traced(tracer_provider),
    ) as q:
        release["w3c"] = anyio.Event()
        with tracer_provider.get_tracer("test").start_as_current_span("GET /", context=parent):
            handle = await q.submit(block, "w3c")
        conn = sqlite3.connect(db)
        (payload,) = conn.execute("SELECT payload FROM tasks WHERE id = ?", (handle.id,)).fetchone()
        conn.close()
        shown = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                [sys.executable, "-m", "corral.tasks_cli", "--db", str(db), "show", handle.id],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        release["w3c"].set()
        assert await handle == "w3c"
    headers = json.loads(payload)["headers"]
    send = send_span_of(exporter.get_finished_spans(), handle.id)
    assert headers == {
        "traceparent": f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}-"
        f"{int(send.context.trace_flags):02x}",
        "tracestate": "vendor=v1",
    }
    [process] = named(exporter.get_finished_spans(), "process q")
    [link] = process.links
    assert link.context.trace_state.get("vendor") == "v1"
    assert shown.returncode == 0, shown.stderr
    assert f"traceparent: {headers['traceparent']}\n" in shown.stdout
    assert "tracestate: vendor=v1\n" in shown.stdout


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("On a durable queue (`store=`) the PRODUCER span") :]
    script = tmp_path / "example.py"
    script.write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "emails.db").exists()


async def test_without_a_tracer_provider_nothing_is_added_to_the_stored_task(
    tmp_path: Path,
) -> None:
    from corral.otel import tracing_options

    db = tmp_path / "tasks.db"
    release["plain"] = anyio.Event()
    release["plain"].set()
    async with corral.TaskQueue(
        "q",
        workers=1,
        capacity=10,
        store=SQLiteStore(db),
        registry=CollectorRegistry(),
        **tracing_options(),
    ) as q:
        handle = q.submit_nowait(block, "plain")
        await handle.persisted()
        conn = sqlite3.connect(db)
        (payload,) = conn.execute("SELECT payload FROM tasks WHERE id = ?", (handle.id,)).fetchone()
        conn.close()
        await handle
    assert json.loads(payload) == {"args": ["plain"], "kwargs": {}}
