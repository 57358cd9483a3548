"""Jobs share a worker's asyncio/trio task; ``corral.current_task_info()`` tells them apart.

The pattern under test is SQLAlchemy's ``async_scoped_session(scopefunc=...)``: a registry
of per-scope objects keyed by whatever ``scopefunc`` returns. Keyed by the current
asyncio/trio task, every job of one worker would share one session; keyed by
``corral.current_task_info()``, each job gets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio


class ScopedRegistry:
    """What ``sqlalchemy.orm.scoped_session`` keeps: one object per ``scopefunc()`` value."""

    def __init__(self, factory: Callable[[], object], scopefunc: Callable[[], Hashable]) -> None:
        self.factory = factory
        self.scopefunc = scopefunc
        self.registry: dict[Hashable, object] = {}

    def __call__(self) -> object:
        scope = self.scopefunc()
        if scope not in self.registry:
            self.registry[scope] = self.factory()
        return self.registry[scope]

    def remove(self) -> None:
        self.registry.pop(self.scopefunc(), None)


def job_scope() -> Hashable:
    info = corral.current_task_info()
    assert info is not None, "called outside a corral task"
    return info


def worker_task() -> Hashable:
    return anyio.get_current_task().id


async def test_jobs_of_one_worker_get_separate_scopes_on_a_queue() -> None:
    sessions = ScopedRegistry(object, job_scope)
    shared = ScopedRegistry(object, worker_task)
    seen: list[tuple[object, object, corral.TaskInfo | None]] = []
    first_started = anyio.Event()
    release_first = anyio.Event()

    async def unit_of_work(name: str) -> str:
        session = sessions()
        seen.append((session, shared(), corral.current_task_info()))
        if name == "first":
            first_started.set()
            await release_first.wait()
        await anyio.sleep(0)
        assert sessions() is session  # the same job keeps its session across awaits
        info = corral.current_task_info()
        assert info is not None
        return info.name + ":" + info.id

    async with corral.TaskQueue(
        "scoped", workers=1, capacity=10, registry=CollectorRegistry()
    ) as q:
        first = q.submit_nowait(unit_of_work, "first")
        second = q.submit_nowait(unit_of_work, "second")
        await first_started.wait()
        release_first.set()
        ids = [await first, await second]
    (s1, w1, i1), (s2, w2, i2) = seen
    assert w1 is w2  # one worker task: keyed by the task, both jobs share a "session"
    assert s1 is not s2  # keyed by the job identity: each job has its own
    assert i1 is not None and i2 is not None
    assert i1.handle is first and i2.handle is second
    assert ids == [f"unit_of_work:{first.id}", f"unit_of_work:{second.id}"]


async def test_concurrent_jobs_on_a_group_get_separate_scopes() -> None:
    sessions = ScopedRegistry(object, job_scope)
    got: dict[int, object] = {}
    both = anyio.Event()

    async def unit_of_work(n: int) -> None:
        got[n] = sessions()
        if len(got) == 2:
            both.set()
        await both.wait()
        assert sessions() is got[n]

    async with corral.TaskGroup(limit=2, name="scoped") as g:
        handles = [g.start_soon(unit_of_work, n) for n in range(2)]
    assert got[0] is not got[1]
    assert {info.handle for info in sessions.registry} == set(handles)  # type: ignore[attr-defined]


async def test_outside_any_job_there_is_no_task_info() -> None:
    assert corral.current_task_info() is None

    def sync_caller() -> Any:
        return corral.current_task_info()

    assert sync_caller() is None
    assert await anyio.to_thread.run_sync(corral.current_task_info) is None
