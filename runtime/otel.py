"""OpenTelemetry tracing for a TaskQueue, through its observer and middleware seams.

    from corral.otel import tracing_options

    queue = corral.TaskQueue("emails", workers=8, capacity=1000, **tracing_options())

At submit, a PRODUCER span ``send {queue}`` is recorded in the submitter's trace. Each
attempt runs in a CONSUMER span ``process {queue}`` that is *linked* to that producer span,
not parented under it: background work outlives the request that submitted it, and a parent
that ended long ago makes a misleading trace. Put ``tracing.middleware`` last in
``middleware=`` so that every retry of :func:`corral.middleware.retry` is its own span.
On a durable queue (``store=``) the producer span's W3C context (``traceparent``, and
``tracestate`` when the submitter's trace has one) is stored with the task, so an attempt
that runs after a restart, or on another process of a Redis fleet that re-claimed it, is
still linked to the submit. Spans carry the messaging semantic-convention attributes
(``messaging.system="corral"``, ``messaging.destination.name``,
``messaging.operation.type``, ``messaging.message.id``); an exception is recorded on the
span and sets its status to error.

``tracing_options()`` returns the ``observers=`` and ``middleware=`` to pass; they are empty
while no tracer provider is configured, so a queue built then pays nothing at all (set up
tracing before opening queues). With other observers or middleware, combine the lists and keep
the tracing middleware last. Needs ``pip install 'corral[otel]'`` (``opentelemetry-api`` only:
the service picks the SDK and exporter). This module is imported only when used:
``import corral`` never imports OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .middleware import CallNext
from .observers import Observer
from .task_info import TaskInfo

__all__ = ["Tracing", "tracing_options"]

SYSTEM = "corral"
_W3C = TraceContextTextMapPropagator()


def _configured() -> bool:
    """False until the service sets a tracer provider (the API's default is a proxy)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracing_options(tracer_provider: trace.TracerProvider | None = None) -> dict[str, list[Any]]:
    """``observers=`` and ``middleware=`` for a TaskQueue: empty until tracing is configured."""
    if tracer_provider is None and not _configured():
        return {"observers": [], "middleware": []}
    tracing = Tracing(tracer_provider)
    return {"observers": [tracing], "middleware": [tracing.middleware]}


class Tracing(Observer):
    """Producer spans at submit, consumer spans per attempt, linked by the task's id."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        # producer span context of each submitted task that has not started yet
        self._submitted: dict[str, SpanContext] = {}

    def _tracer(self) -> trace.Tracer | None:
        if self._provider is None and not _configured():
            return None
        return trace.get_tracer("corral", tracer_provider=self._provider)

    def on_submit(self, task: TaskInfo) -> None:
        """A PRODUCER span in the submitter's context (the queue calls this in submit)."""
        if task.headers is not None:  # a durable attempt: its producer span was made at submit
            return
        span = self._send(task)
        if span is not None:
            self._submitted[task.id] = span

    def durable_headers(self, task: TaskInfo) -> dict[str, str] | None:
        """At a durable submit: the PRODUCER span, and its W3C context to store with the
        task so that an attempt in any process, after any restart, links to it."""
        span = self._send(task)
        if span is None:
            return None
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(trace.NonRecordingSpan(span)))
        return carrier or None

    def _send(self, task: TaskInfo) -> SpanContext | None:
        tracer = self._tracer()
        if tracer is None:
            return None
        span = tracer.start_span(
            f"send {task.queue}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes(task, "send"),
        )
        span.end()
        return span.get_span_context()

    def on_complete(self, task: TaskInfo, outcome: str, error: BaseException | None) -> None:
        """A task that never started (cancelled while queued) drops its producer link."""
        self._submitted.pop(task.id, None)

    async def middleware(self, task: TaskInfo, call_next: CallNext) -> Any:
        """One CONSUMER span per call (per attempt when this middleware is last)."""
        tracer = self._tracer()
        if tracer is None:
            return await call_next()
        producer = self._submitted.pop(task.id, None)
        if producer is None and task.headers:  # stored at a durable submit
            producer = _stored_context(task.headers)
        links = [Link(producer)] if producer is not None else []
        attributes = _attributes(task, "process")
        attributes["corral.task.attempt"] = task.attempt
        # a new root: linked to the submit, not parented under a request that has ended
        with tracer.start_as_current_span(
            f"process {task.queue}",
            context=otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await call_next()
            except Exception as exc:  # cancellation is not a failure of the task
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise


def _stored_context(headers: Mapping[str, str]) -> SpanContext | None:
    """The producer span context a durable task carries (None if absent or malformed)."""
    found = trace.get_current_span(_W3C.extract(headers)).get_span_context()
    return found if found.is_valid else None


def _attributes(task: TaskInfo, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": task.queue,
        "messaging.operation.type": operation,
        "messaging.message.id": task.id,
        "corral.task.name": task.name,
    }
