"""Task failures reach Sentry through a real sentry_sdk client with a capturing transport."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import corral
import pytest
import sentry_sdk
from prometheus_client import CollectorRegistry
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

pytestmark = pytest.mark.anyio


class CapturingTransport(Transport):
    """Keeps every event in memory instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@contextlib.contextmanager
def capturing(**options: Any) -> Iterator[list[dict[str, Any]]]:
    """A real sentry_sdk client (its defaults, e.g. local-variable capture) whose transport
    keeps every event."""
    transport = CapturingTransport()
    sentry_sdk.init(
        dsn="https://public@sentry.example.invalid/1",
        transport=transport,
        environment="production",
        release="billing@1.4.2",
        default_integrations=False,
        **options,
    )
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.Scope.get_global_scope().set_client(None)


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    with capturing() as events:
        yield events


async def charge(order_id: int) -> None:
    await anyio.sleep(0)
    raise ValueError(f"card declined for order {order_id}")


async def test_failure_is_captured_with_queue_task_environment_and_release(
    sentry_events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="corral.queue")
    async with corral.TaskQueue(
        "payments", workers=2, capacity=10, registry=CollectorRegistry()
    ) as q:
        sentry_sdk.set_tag("request_id", "req-42")  # the submitter's scope travels along
        with pytest.raises(ValueError):
            await q.submit_nowait(charge, 7, key="customer-1")
    [event] = sentry_events
    assert event["tags"]["corral.queue"] == "payments"
    assert event["tags"]["corral.task"] == "charge"
    assert event["tags"]["request_id"] == "req-42"
    assert event["environment"] == "production"
    assert event["release"] == "billing@1.4.2"
    assert "key" not in event["contexts"]["corral"]  # send_default_pii is off
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert "order 7" in exception["value"]
    # Reported to Sentry, so the queue does not also log an ERROR with the traceback.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_scope_data_the_task_set_before_failing_is_included(
    sentry_events: list[dict[str, Any]],
) -> None:
    async def tagged_failure() -> None:
        sentry_sdk.set_tag("step", "charging")
        await anyio.sleep(0)
        raise RuntimeError("declined")

    async with corral.TaskQueue("tags", workers=1, capacity=1, registry=CollectorRegistry()) as q:
        with pytest.raises(RuntimeError):
            await q.submit_nowait(tagged_failure)
    [event] = sentry_events
    assert event["tags"]["step"] == "charging"
    assert event["tags"]["corral.task"] == "tagged_failure"


async def test_corral_tags_do_not_leak_into_the_services_scope(
    sentry_events: list[dict[str, Any]],
) -> None:
    async with corral.TaskQueue("jobs", workers=1, capacity=10, registry=CollectorRegistry()) as q:
        with pytest.raises(ValueError):
            await q.submit_nowait(charge, 1)
    sentry_sdk.capture_message("the service's own event")
    task_event, own_event = sentry_events
    assert "corral.queue" in task_event["tags"]
    assert "corral.queue" not in own_event.get("tags", {})


async def test_each_failure_is_one_event_after_retries(
    sentry_events: list[dict[str, Any]],
) -> None:
    chain = [corral.middleware.retry(3, backoff=0)]
    async with corral.TaskQueue(
        "retrying", workers=1, capacity=10, registry=CollectorRegistry(), middleware=chain
    ) as q:
        with pytest.raises(ValueError):
            await q.submit_nowait(charge, 3)
    assert len(sentry_events) == 1


async def test_without_sentry_nothing_is_sent_and_the_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sentry_sdk.init()  # initialised without a DSN: events would go nowhere
    try:
        caplog.set_level(logging.ERROR, logger="corral.queue")
        async with corral.TaskQueue(
            "quiet", workers=1, capacity=1, registry=CollectorRegistry()
        ) as q:
            with pytest.raises(ValueError):
                await q.submit_nowait(charge, 9)
    finally:
        sentry_sdk.Scope.get_global_scope().set_client(None)
    assert any("quiet/charge" in r.getMessage() for r in caplog.records)


SECRET = "hunter2-s3cr3t"


@corral.task(name="tests.sentry.login")
async def login(user: str, password: str) -> None:
    await anyio.sleep(0)
    raise PermissionError(f"login refused for {user}")


async def plain_login(user: str, password: str) -> None:
    await anyio.sleep(0)
    raise PermissionError(f"login refused for {user}")


def corral_frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    frames = [
        frame
        for exception in event["exception"]["values"]
        for frame in exception["stacktrace"]["frames"]
    ]
    return [f for f in frames if str(f.get("module", "")).startswith("corral.")]


@pytest.mark.parametrize("durable", [True, False])
async def test_without_send_default_pii_no_argument_or_key_is_sent(
    tmp_path: Path, durable: bool
) -> None:
    store = corral.SQLiteStore(tmp_path / "tasks.db") if durable else None
    with capturing() as events:  # sentry_sdk's defaults: locals captured, no PII
        async with corral.TaskQueue(
            "auth", workers=1, capacity=10, registry=CollectorRegistry(), store=store
        ) as q:
            if durable:
                handle = await q.submit(login, "ada", password=SECRET)
            else:
                handle = q.submit_nowait(plain_login, "ada", password=SECRET, key=f"k-{SECRET}")
            with pytest.raises((PermissionError, corral.TaskDeadLettered)):
                await handle
    [event] = events
    assert "login refused for ada" in json.dumps(event)  # the error itself is sent
    assert SECRET not in json.dumps(event)
    assert corral_frames(event), "corral's frames are in the stack trace"
    assert all("vars" not in frame for frame in corral_frames(event))
    assert set(event["contexts"]["corral"]) == {"queue", "task", "task_id"}


async def test_with_send_default_pii_the_key_and_locals_are_sent() -> None:
    with capturing(send_default_pii=True) as events:
        async with corral.TaskQueue(
            "auth", workers=1, capacity=10, registry=CollectorRegistry()
        ) as q:
            with pytest.raises(PermissionError):
                await q.submit_nowait(plain_login, "ada", password=SECRET, key="customer-1")
    [event] = events
    assert event["contexts"]["corral"]["key"] == "'customer-1'"
    assert any("vars" in frame for frame in corral_frames(event))
    assert SECRET in json.dumps(event)  # what sentry_sdk itself was told to send


def test_task_records_keep_arguments_out_of_their_repr() -> None:
    record = corral.store.TaskRecord(
        id="t1",
        queue="auth",
        name="tests.sentry.login",
        payload=json.dumps({"args": ["ada"], "kwargs": {"password": SECRET}}),
        state="dead",
        attempts=1,
        max_attempts=1,
        not_before=0.0,
        created_at=0.0,
        updated_at=0.0,
        result=json.dumps(SECRET),
    )
    assert SECRET not in repr(record) and "tests.sentry.login" in repr(record)
