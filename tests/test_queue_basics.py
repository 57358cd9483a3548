"""TaskQueue basics: submit, results, errors on the handle, backpressure, closed queues."""

from __future__ import annotations

import contextvars

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

request_id = contextvars.ContextVar("request_id", default="-")


async def add(a: int, b: int) -> int:
    await anyio.sleep(0)
    return a + b


async def fail(message: str) -> None:
    raise ValueError(message)


async def read_request_id() -> str:
    await anyio.sleep(0)
    return request_id.get()


def make(**kwargs: object) -> corral.TaskQueue:
    options: dict[str, object] = {"workers": 4, "capacity": 100, "registry": CollectorRegistry()}
    options.update(kwargs)
    return corral.TaskQueue("q", **options)  # type: ignore[arg-type]


async def test_results_and_errors_land_on_handles() -> None:
    async with make(on_error=[lambda _info, _exc: None]) as q:
        ok = q.submit_nowait(add, 1, 2)
        bad = q.submit_nowait(fail, "boom")
        assert await ok == 3
        with pytest.raises(ValueError, match="boom"):
            await bad
        assert ok.result() == 3 and ok.name == "add" and ok.id
        assert isinstance(bad.exception(), ValueError)
        after = q.submit_nowait(add, 2, 2)  # the worker survived the crash
        assert await after == 4


async def test_submitter_context_is_copied_into_the_task() -> None:
    async with make() as q:
        request_id.set("req-7")
        handle = q.submit_nowait(read_request_id)
        request_id.set("req-8")  # later changes do not leak into the already-submitted task
        assert await handle == "req-7"


async def test_queue_full_names_queue_depth_and_capacity() -> None:
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=2) as q:
        first = q.submit_nowait(wait)
        await anyio.wait_all_tasks_blocked()  # let the worker take it; it does not count as queued
        q.submit_nowait(wait)
        q.submit_nowait(wait)
        with pytest.raises(corral.QueueFull, match=r"'q' is full: depth 2, capacity 2"):
            q.submit_nowait(wait)
        gate.set()
        await first
    assert q.stats().rejected == 1


async def test_submit_to_closed_or_unopened_queue_raises_queue_closed() -> None:
    q = make()
    with pytest.raises(corral.QueueClosed, match="not open"):
        q.submit_nowait(add, 1, 1)
    async with q:
        pass
    with pytest.raises(corral.QueueClosed, match="closed"):
        q.submit_nowait(add, 1, 1)
    with pytest.raises(corral.QueueClosed):
        await q.submit(add, 1, 1)


async def test_sync_callable_is_rejected_with_a_pointer_to_corral_sync() -> None:
    def blocking() -> None:
        pass

    async with make() as q:
        with pytest.raises(TypeError, match=r"blocking is not an async function.*corral\.sync"):
            q.submit_nowait(blocking)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not a lambda"):
            q.submit_nowait(lambda: add(1, 2))
        with pytest.raises(TypeError, match=r"got a coroutine object.*pass the async function"):
            q.submit_nowait(add(1, 2))  # type: ignore[arg-type]


async def test_submit_waits_for_room_then_times_out_with_queue_full() -> None:
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=1) as q:
        q.submit_nowait(wait)
        await anyio.wait_all_tasks_blocked()
        q.submit_nowait(wait)
        with pytest.raises(corral.QueueFull, match=r"after waiting 0\.05s"):
            await q.submit(wait, timeout=0.05)

        async def open_gate() -> None:
            await anyio.wait_all_tasks_blocked()
            gate.set()

        async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="test"
            tg.start_soon(open_gate)
            handle = await q.submit(add, 2, 3, timeout=5)
        assert await handle == 5
    assert q.stats().rejected == 1


async def test_cancelled_waiting_submitter_passes_its_turn_on() -> None:
    gate = anyio.Event()

    async def wait() -> None:
        await gate.wait()

    async with make(workers=1, capacity=1) as q:
        q.submit_nowait(wait)
        await anyio.wait_all_tasks_blocked()
        q.submit_nowait(wait)
        results: list[str] = []

        async def patient() -> None:
            await q.submit(add, 1, 1)
            results.append("patient got in")

        async with anyio.create_task_group() as tg:  # corral: allow[CRL204] reason="test"
            with anyio.CancelScope() as impatient:
                tg.start_soon(patient)
                await anyio.wait_all_tasks_blocked()
                impatient.cancel()
                await q.submit(add, 0, 0)
            gate.set()
        assert results == ["patient got in"]


async def test_kwargs_partials_methods_and_callable_objects_are_accepted() -> None:
    import functools

    class Mailer:
        async def send(self, to: str, *, subject: str) -> str:
            await anyio.sleep(0)
            return f"{to}:{subject}"

        async def __call__(self, to: str) -> str:
            return f"called {to}"

    mailer = Mailer()
    async with make() as q:
        assert await q.submit_nowait(mailer.send, "ann", subject="hi") == "ann:hi"
        partial = functools.partial(mailer.send, subject="p")
        assert await q.submit_nowait(partial, "bob") == "bob:p"
        assert await q.submit_nowait(mailer, "cy") == "called cy"
    names = {t.name for t in q._tallies.values()}
    assert names == {"Mailer.send", "Mailer"}


async def test_handles_someone_holds_are_never_reused() -> None:
    """A handle the caller holds keeps its own task's result, whatever else runs.

    (Entries used to be recycled when ``sys.getrefcount`` said nobody held them; CPython
    3.14 counts borrowed stack references differently, so held handles were reused.)
    """

    async def echo(value: int) -> int:
        return value

    async with make(workers=2, capacity=100) as q:
        held = [q.submit_nowait(echo, i) for i in range(20)]
        for i in range(20):
            q.submit_nowait(echo, 100 + i)  # dropped at once: fire-and-forget
        await anyio.wait_all_tasks_blocked()
        later = [q.submit_nowait(echo, 200 + i) for i in range(20)]
        assert not {id(h) for h in held} & {id(h) for h in later}
        assert [await h for h in later] == list(range(200, 220))
        assert [h.result() for h in held] == list(range(20))
        ids = [h.id for h in held]
        assert len(set(ids)) == 20


async def test_tasks_from_one_submitter_do_not_see_each_others_context_changes() -> None:
    async def set_and_read(value: str) -> str:
        before = request_id.get()
        request_id.set(value)
        await anyio.sleep(0)
        return f"{before}->{request_id.get()}"

    async with make(workers=1) as q:
        request_id.set("outer")
        first = q.submit_nowait(set_and_read, "a")
        second = q.submit_nowait(set_and_read, "b")
        assert await first == "outer->a"
        assert await second == "outer->b"  # not "a->b": each task has its own copy
    assert request_id.get() == "outer"  # nor did they change the submitter's
