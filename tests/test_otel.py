"""OpenTelemetry tracing: producer span at submit, linked consumer span per attempt.

Spans are read back with the SDK's in-memory exporter; each test has its own provider, passed
to :class:`corral.otel.Tracing`, so no global state is touched.
"""

from __future__ import annotations

import subprocess
import sys

import corral
import pytest
from corral.otel import Tracing, tracing_options
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_submit_and_process_spans_are_linked_not_parented() -> None:
    tracer_provider, exporter = provider()
    tracing = Tracing(tracer_provider)
    tracer = tracer_provider.get_tracer("test")

    async def send(to: str) -> str:
        return f"sent to {to}"

    async with corral.TaskQueue(
        "emails",
        workers=1,
        capacity=10,
        registry=CollectorRegistry(),
        observers=[tracing],
        middleware=[tracing.middleware],
    ) as q:
        with tracer.start_as_current_span("POST /signup") as request:
            handle = q.submit_nowait(send, "ada")
        assert await handle == "sent to ada"

    spans = exporter.get_finished_spans()
    [producer] = by_name(spans, "send emails")
    [consumer] = by_name(spans, "process emails")
    assert producer.kind is SpanKind.PRODUCER and consumer.kind is SpanKind.CONSUMER
    # the producer belongs to the request's trace; the consumer starts its own and links back
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    assert consumer.parent is None
    assert consumer.context.trace_id != request.get_span_context().trace_id
    [link] = consumer.links
    assert link.context.span_id == producer.context.span_id
    assert link.context.trace_id == producer.context.trace_id
    for span, operation in ((producer, "send"), (consumer, "process")):
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "corral"
        assert span.attributes["messaging.destination.name"] == "emails"
        assert span.attributes["messaging.operation.type"] == operation
        assert span.attributes["messaging.message.id"] == handle.id
    assert consumer.status.status_code is StatusCode.UNSET


async def test_each_attempt_is_a_span_and_failures_are_recorded() -> None:
    tracer_provider, exporter = provider()
    tracing = Tracing(tracer_provider)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    async def broken() -> None:
        raise ValueError("card declined")

    retry = corral.middleware.retry(2, backoff=0, retry_on=ConnectionError)
    async with corral.TaskQueue(
        "billing",
        workers=1,
        capacity=10,
        registry=CollectorRegistry(),
        observers=[tracing],
        middleware=[retry, tracing.middleware],
    ) as q:
        assert await q.submit_nowait(flaky) == "ok"
        with pytest.raises(ValueError, match="card declined"):
            await q.submit_nowait(broken)

    consumers = by_name(exporter.get_finished_spans(), "process billing")
    assert [s.attributes["corral.task.attempt"] for s in consumers if s.attributes] == [1, 2, 1]
    first, second, failed = consumers
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert first.events[0].attributes is not None
    assert first.events[0].attributes["exception.type"] == "ConnectionError"
    assert second.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: card declined"
    # only the first attempt consumed the producer link; every attempt is its own root
    assert len(first.links) == 1 and all(s.parent is None for s in consumers)


async def test_without_a_tracer_provider_a_queue_gets_nothing_to_run() -> None:
    """No provider configured (the API's proxy): no observer, no middleware, no cost."""
    assert tracing_options() == {"observers": [], "middleware": []}
    tracer_provider, exporter = provider()
    options = tracing_options(tracer_provider)
    [tracing] = options["observers"]
    assert options["middleware"] == [tracing.middleware]

    async def work() -> int:
        return 7

    async with corral.TaskQueue(
        "quiet", workers=1, capacity=10, registry=CollectorRegistry(), **options
    ) as q:
        assert await q.submit_nowait(work) == 7
    assert {s.name for s in exporter.get_finished_spans()} == {"send quiet", "process quiet"}
    assert tracing._submitted == {}  # nothing left behind once the task started


def test_import_corral_does_not_import_opentelemetry() -> None:
    code = "import sys, corral\nprint('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n"
