"""Middleware chains: order, crashes in every position, and the built-ins."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import corral
import pytest
from corral import middleware
from corral.middleware import CallNext
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

tenant = contextvars.ContextVar("tenant", default="none")


def make(registry: CollectorRegistry | None = None, **kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {
        "workers": 2,
        "capacity": 10,
        "registry": registry or CollectorRegistry(),
        "on_error": [lambda _t, _e: None],
    }
    options.update(kwargs)
    return corral.TaskQueue("mw", **options)  # type: ignore[arg-type]


def tracer(name: str, log: list[str]) -> middleware.Middleware:
    async def trace(task: corral.TaskInfo, call_next: CallNext) -> Any:
        log.append(f"enter {name} {tenant.get()}")
        result = await call_next()
        log.append(f"exit {name}")
        return result

    return trace


async def test_chain_runs_outermost_first_in_the_submitters_context() -> None:
    log: list[str] = []

    async def task() -> str:
        log.append("task")
        return "result"

    chain = [tracer("a", log), tracer("b", log), tracer("c", log)]
    async with make(middleware=chain) as q:
        tenant.set("acme")
        assert await q.submit_nowait(task) == "result"
    assert log == [
        "enter a acme",
        "enter b acme",
        "enter c acme",
        "task",
        "exit c",
        "exit b",
        "exit a",
    ]


def crasher(when: str) -> middleware.Middleware:
    async def crash(task: corral.TaskInfo, call_next: CallNext) -> Any:
        if when == "before":
            raise RuntimeError("crash before")
        await call_next()
        raise RuntimeError("crash after")

    return crash


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_crash_in_any_position_fails_only_that_task(position: int, when: str) -> None:
    log: list[str] = []
    errors: list[str] = []
    chain: list[middleware.Middleware] = [tracer("a", log), tracer("b", log)]
    chain.insert(position, crasher(when))

    async def task() -> str:
        log.append("task")
        return "ok"

    registry = CollectorRegistry()
    hook: Callable[[corral.TaskInfo, Exception], None] = lambda _t, e: errors.append(str(e))  # noqa: E731
    async with make(registry, workers=1, middleware=chain, on_error=[hook]) as q:
        with pytest.raises(RuntimeError, match=f"crash {when}"):
            await q.submit_nowait(task)
        second = q.submit_nowait(task)
        with pytest.raises(RuntimeError):
            await second  # the worker is alive and runs the next task through the chain
    assert errors == [f"crash {when}", f"crash {when}"]
    assert ("task" in log) == (when == "after")
    value = registry.get_sample_value(
        "corral_tasks_completed_total", {"queue": "mw", "task": "task", "outcome": "error"}
    )
    assert value == 2


async def test_a_crash_in_the_task_unwinds_through_every_middleware() -> None:
    log: list[str] = []

    async def task() -> None:
        raise KeyError("inner")

    async def observe(task: corral.TaskInfo, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except KeyError:
            log.append(f"saw KeyError in {task.name}")
            raise

    async with make(middleware=[observe, observe]) as q:
        with pytest.raises(KeyError):
            await q.submit_nowait(task)
    assert log == ["saw KeyError in task", "saw KeyError in task"]


async def test_timeout_fails_slow_tasks_with_timeout_error() -> None:
    async def slow() -> None:
        await anyio.sleep(10)

    async def fast() -> str:
        return "fast"

    async with make(middleware=[middleware.timeout(0.05)]) as q:
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await q.submit_nowait(slow)
        assert await q.submit_nowait(fast) == "fast"


async def test_retry_reruns_until_success_and_counts_retries() -> None:
    attempts: list[int] = []

    async def flaky(succeed_on: int) -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < succeed_on:
            raise ConnectionError("try again")
        return "done"

    seen_attempts: list[int] = []

    async def spy(task: corral.TaskInfo, call_next: CallNext) -> Any:
        seen_attempts.append(task.attempt)
        return await call_next()

    registry = CollectorRegistry()
    chain = [middleware.retry(3, backoff=0.001), spy]
    async with make(registry, middleware=chain) as q:
        assert await q.submit_nowait(flaky, 3) == "done"
    assert attempts == [1, 2, 3]
    assert seen_attempts == [1, 2, 3]
    labels = {"queue": "mw", "task": "flaky"}
    assert registry.get_sample_value("corral_task_retries_total", labels) == 2


async def test_retry_gives_up_after_the_last_attempt_and_skips_non_retryable() -> None:
    calls: list[str] = []

    async def always(kind: str) -> None:
        calls.append(kind)
        raise (ValueError if kind == "value" else ConnectionError)(kind)

    chain = [middleware.retry(3, backoff=0, jitter="none", retry_on=ConnectionError)]
    async with make(middleware=chain) as q:
        with pytest.raises(ConnectionError):
            await q.submit_nowait(always, "conn")
        with pytest.raises(ValueError):
            await q.submit_nowait(always, "value")
    assert calls == ["conn", "conn", "conn", "value"]


async def test_retry_with_a_predicate_and_timeout_per_attempt() -> None:
    calls: list[int] = []

    async def sometimes_slow() -> str:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep(10)
        return "second attempt was quick"

    chain = [
        middleware.retry(2, backoff=0, retry_on=lambda e: isinstance(e, TimeoutError)),
        middleware.timeout(0.05),
    ]
    async with make(middleware=chain) as q:
        with anyio.fail_after(5):
            assert await q.submit_nowait(sometimes_slow) == "second attempt was quick"


async def test_log_middleware_logs_outcomes(caplog: pytest.LogCaptureFixture) -> None:
    async def fine() -> None:
        pass

    async def broken() -> None:
        raise ValueError("broken")

    caplog.set_level(logging.DEBUG, logger="corral.tasks")
    async with make(middleware=[middleware.log()]) as q:
        await q.submit_nowait(fine)
        with pytest.raises(ValueError):
            await q.submit_nowait(broken)
    messages = [r.getMessage() for r in caplog.records if r.name == "corral.tasks"]
    assert any(m.startswith("start mw/fine") for m in messages)
    assert any(m.startswith("done mw/fine") for m in messages)
    assert any(m.startswith("failed mw/broken") and "ValueError" in m for m in messages)


def test_built_in_middleware_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="seconds must be > 0"):
        middleware.timeout(0)
    with pytest.raises(ValueError, match="attempts must be an int >= 1"):
        middleware.retry(0)
    with pytest.raises(ValueError, match="backoff"):
        middleware.retry(2, backoff=-1)
    with pytest.raises(ValueError, match="jitter"):
        middleware.retry(2, jitter="half")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_on"):
        middleware.retry(2, retry_on=42)  # type: ignore[arg-type]


async def test_middleware_can_replace_the_result() -> None:
    async def double(task: corral.TaskInfo, call_next: Callable[[], Awaitable[Any]]) -> Any:
        return 2 * await call_next()

    async def seven() -> int:
        return 7

    async with make(middleware=[double]) as q:
        assert await q.submit_nowait(seven) == 14
