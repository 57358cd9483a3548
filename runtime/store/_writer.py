"""Single-writer group commit: many concurrent callers, one transaction, one fsync.

Callers hand the writer small functions of a ``sqlite3.Connection``. One thread owned
by the store takes everything that queued up while the previous commit was on disk and
applies it in one transaction, so sqlite3 never blocks the event loop and the
connection is only ever used by that thread. Each operation runs inside its own
SAVEPOINT, so one failing operation is reported to its caller without undoing its
neighbours; a failing COMMIT fails every operation of the batch. Outcomes are published
on the event loop only after the COMMIT returned, so nothing is acknowledged that is not
on disk.

A thread (rather than a task in some task group) keeps the store independent of who
opens and closes it: any task may close it, and the loop never waits on a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue as _queue
import sqlite3
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import anyio

from .base import CommitHistogram, StoreError

__all__ = ["GroupWriter", "WriteOp", "loop_caller"]

T = TypeVar("T")

_UNSET: Any = object()
_STOP: Any = object()

#: Schedules a callback on the owning event loop from another thread, without waiting.
LoopCaller = Callable[[Callable[[], object]], object]


def loop_caller() -> LoopCaller:
    """How the writer thread reaches the current event loop (asyncio or trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio  # the only other backend anyio runs on

        return trio.lowlevel.current_trio_token().run_sync_soon
    return loop.call_soon_threadsafe


class WriteOp(Generic[T]):
    """One unit of work for the writer; await it for the function's result.

    Its outcome is set on the event loop, after the commit, never by the writer thread.
    """

    __slots__ = ("_callbacks", "_done", "_error", "_event", "_result", "fn", "queue")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], queue: str | None) -> None:
        self.fn = fn
        self.queue = queue
        self._result: T = _UNSET
        self._error: BaseException | None = None
        self._done = False
        self._event: anyio.Event | None = None
        self._callbacks: list[Callable[[WriteOp[T]], object]] | None = None

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, callback: Callable[[WriteOp[T]], object]) -> None:
        """Call ``callback(op)`` on the event loop once the write is resolved."""
        if self._done:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        """The function's result once resolved; re-raises its error."""
        if not self._done:
            raise StoreError("write not resolved yet")
        if self._error is not None:
            raise self._error
        return self._result

    def _settle(self, result: T, error: BaseException | None) -> None:
        self._result = result
        self._error = error
        self._done = True
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                callback(self)

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            if self._event is None:
                self._event = anyio.Event()
            yield from self._event.wait().__await__()
        return self.result()


class GroupWriter:
    """Owns the connection's writes on one thread; ``start()`` on the loop, ``close()`` to end."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        max_batch: int = 1024,
        commits: dict[str, CommitHistogram] | None = None,
    ) -> None:
        self._conn = conn
        self._path = path
        self._max_batch = max_batch
        self._inbox: _queue.SimpleQueue[Any] = _queue.SimpleQueue()
        self.commits: dict[str, CommitHistogram] = commits if commits is not None else {}
        self._closed = False
        self._call_soon: LoopCaller | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._call_soon = loop_caller()
        self._thread = threading.Thread(
            target=self._run, name=f"corral-store-writer:{self._path}", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T], queue: str | None = None) -> WriteOp[T]:
        """Queue ``fn`` for the next commit without waiting."""
        if self._closed:
            raise StoreError(f"task store {self._path} is closed")
        op: WriteOp[T] = WriteOp(fn, queue)
        self._inbox.put(op)
        return op

    async def close(self) -> None:
        """Accept no more work; return once everything queued is committed and published."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(_STOP)
        thread = self._thread
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join)  # not cancellable: always drains
        done = anyio.Event()
        self._publish(done.set)  # runs after every outcome the thread posted before it
        await done.wait()

    def _publish(self, callback: Callable[[], object]) -> None:
        assert self._call_soon is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._call_soon(callback)

    def _run(self) -> None:
        inbox = self._inbox
        stopping = False
        while not stopping:
            first = inbox.get()
            if first is _STOP:
                break
            batch: list[WriteOp[Any]] = [first]
            while len(batch) < self._max_batch:
                try:
                    op = inbox.get_nowait()
                except _queue.Empty:
                    break
                if op is _STOP:
                    stopping = True
                    break
                batch.append(op)
            outcomes = self._commit(batch)
            self._publish(functools.partial(_settle_all, batch, outcomes))

    def _commit(self, batch: list[WriteOp[Any]]) -> list[tuple[Any, BaseException | None]]:
        conn = self._conn
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return self._fail(batch, exc)
        outcomes: list[tuple[Any, BaseException | None]] = []
        for op in batch:
            try:
                conn.execute("SAVEPOINT op")
                outcomes.append((op.fn(conn), None))
                conn.execute("RELEASE op")
            except Exception as exc:
                outcomes.append((None, _translate(exc, self._path)))
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as rollback_exc:  # pragma: no cover - I/O failure path
                    return self._abort(batch, rollback_exc)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return self._abort(batch, exc)
        elapsed = time.perf_counter() - started
        for queue in {op.queue for op in batch}:
            if queue is not None:
                hist = self.commits.get(queue)
                if hist is None:
                    hist = self.commits[queue] = CommitHistogram()
                hist.observe(elapsed)
        return outcomes

    def _abort(
        self, batch: list[WriteOp[Any]], exc: sqlite3.Error
    ) -> list[tuple[Any, BaseException | None]]:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            self._conn.execute("ROLLBACK")
        return self._fail(batch, exc)

    def _fail(
        self, batch: list[WriteOp[Any]], exc: sqlite3.Error
    ) -> list[tuple[Any, BaseException | None]]:
        error = _translate(exc, self._path)
        return [(None, error) for _ in batch]


def _settle_all(
    batch: list[WriteOp[Any]], outcomes: list[tuple[Any, BaseException | None]]
) -> None:
    for op, (result, error) in zip(batch, outcomes, strict=True):
        op._settle(result, error)


def _translate(exc: BaseException, path: str) -> BaseException:
    """sqlite3 errors become StoreError naming the file; other errors pass through."""
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"task store {path}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return exc
