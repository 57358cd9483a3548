"""Each task runs in exactly its submitter's context snapshot (queue and group, both backends).

Contexts are never compared: two snapshots whose values compare equal are still two
snapshots, and a value whose ``__eq__`` is elementwise must not break a submit.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import corral
import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

bucket: contextvars.ContextVar[list[str]] = contextvars.ContextVar("bucket")
matrix: contextvars.ContextVar[Elementwise] = contextvars.ContextVar("matrix")


class Elementwise:
    """A numpy-like value: ``==`` answers elementwise and its truth value is an error."""

    def __init__(self, *values: int) -> None:
        self.values = values

    def __eq__(self, other: object) -> Any:
        theirs = other.values if isinstance(other, Elementwise) else (other,) * len(self.values)
        return Elementwise(*(int(a == b) for a, b in zip(self.values, theirs, strict=False)))

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array with more than one element is ambiguous")

    __hash__ = None  # type: ignore[assignment]


async def append(item: str) -> list[str]:
    bucket.get().append(item)
    await anyio.sleep(0)
    return bucket.get()


async def read_matrix() -> tuple[int, ...]:
    await anyio.sleep(0)
    return matrix.get().values


Submit = Callable[..., Any]


async def _with_queue(body: Callable[[Submit], Awaitable[None]]) -> None:
    async with corral.TaskQueue("ctx", workers=2, capacity=100, registry=CollectorRegistry()) as q:
        await body(q.submit_nowait)


async def _with_group(body: Callable[[Submit], Awaitable[None]]) -> None:
    async with corral.TaskGroup(limit=2, name="ctx") as g:
        await body(g.start_soon)


RUNNERS = [pytest.param(_with_queue, id="queue"), pytest.param(_with_group, id="group")]


@pytest.mark.parametrize("runner", RUNNERS)
async def test_two_requests_with_fresh_equal_lists_never_share_one(runner: Any) -> None:
    """Request A and B each set a fresh empty list: B's task must not append to A's."""
    lists: dict[str, list[str]] = {}
    handles: dict[str, Any] = {}

    async def body(submit: Submit) -> None:
        for request in ("a", "b"):
            mine: list[str] = []
            lists[request] = mine

            def request_scope(request: str = request, mine: list[str] = mine) -> None:
                bucket.set(mine)
                handles[request] = submit(append, request)

            contextvars.copy_context().run(request_scope)
        for handle in handles.values():
            await handle

    await runner(body)
    assert lists == {"a": ["a"], "b": ["b"]}
    assert handles["a"].result() is lists["a"]
    assert handles["b"].result() is lists["b"]


@pytest.mark.parametrize("runner", RUNNERS)
async def test_values_with_elementwise_eq_do_not_break_submit(runner: Any) -> None:
    results: list[Any] = []

    async def body(submit: Submit) -> None:
        handles = []
        for values in ((1, 2), (1, 2), (3, 4)):

            def request_scope(values: tuple[int, ...] = values) -> None:
                matrix.set(Elementwise(*values))
                handles.append(submit(read_matrix))

            contextvars.copy_context().run(request_scope)
        results.extend([await h for h in handles])

    await runner(body)
    assert results == [(1, 2), (1, 2), (3, 4)]


@pytest.mark.parametrize("runner", RUNNERS)
async def test_a_task_changing_its_context_is_seen_by_no_other_task(runner: Any) -> None:
    """Two tasks submitted from one unchanged context each get a snapshot of their own."""
    seen: list[str] = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="-")

    async def set_then_read(value: str) -> None:
        before = marker.get()
        marker.set(value)
        await anyio.sleep(0)
        seen.append(f"{before}->{marker.get()}")

    async def body(submit: Submit) -> None:
        marker.set("outer")
        first = submit(set_then_read, "x")
        second = submit(set_then_read, "y")
        await first
        await second

    await runner(body)
    assert sorted(seen) == ["outer->x", "outer->y"]
