"""Single-writer group commit: many concurrent callers, one transaction, one fsync.

Callers hand the writer small functions of a ``sqlite3.Connection``. The writer (one
coroutine in the store's task group) takes everything that queued up while the
previous commit was on disk and applies it in one transaction on a worker thread
(``anyio.to_thread`` with a ``CapacityLimiter(1)``, so sqlite3 never blocks the event
loop and the connection is only ever used by one thread at a time). Each operation
runs inside its own SAVEPOINT, so one failing operation is reported to its caller
without undoing its neighbours; a failing COMMIT fails every operation in the batch,
so nothing is acknowledged that is not on disk.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .base import CommitHistogram, StoreError

__all__ = ["GroupWriter", "WriteOp"]

T = TypeVar("T")

_UNSET: Any = object()


class WriteOp(Generic[T]):
    """One unit of work for the writer; await it for the function's result."""

    __slots__ = ("_callbacks", "_error", "_event", "_result", "fn", "queue")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], queue: str | None) -> None:
        self.fn = fn
        self.queue = queue
        self._result: T = _UNSET
        self._error: BaseException | None = None
        self._event: anyio.Event | None = None
        self._callbacks: list[Callable[[WriteOp[T]], object]] | None = None

    def done(self) -> bool:
        return self._result is not _UNSET or self._error is not None

    def add_done_callback(self, callback: Callable[[WriteOp[T]], object]) -> None:
        """Call ``callback(op)`` on the event loop once the write is resolved."""
        if self.done():
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        """The function's result once resolved; re-raises its error."""
        if self._error is not None:
            raise self._error
        if self._result is _UNSET:
            raise StoreError("write not resolved yet")
        return self._result

    def _resolve(self) -> None:
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                callback(self)

    def __await__(self) -> Generator[Any, None, T]:
        if not self.done():
            if self._event is None:
                self._event = anyio.Event()
            yield from self._event.wait().__await__()
        return self.result()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class GroupWriter:
    """Owns the connection's writes; started by the store inside its task group."""

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
        self._limiter = anyio.CapacityLimiter(1)
        self._send: MemoryObjectSendStream[WriteOp[Any]]
        self._receive: MemoryObjectReceiveStream[WriteOp[Any]]
        self._send, self._receive = anyio.create_memory_object_stream[WriteOp[Any]](math.inf)
        self.commits: dict[str, CommitHistogram] = commits if commits is not None else {}
        self._closed = False

    def submit(self, fn: Callable[[sqlite3.Connection], T], queue: str | None = None) -> WriteOp[T]:
        """Queue ``fn`` for the next commit without waiting."""
        if self._closed:
            raise StoreError(f"task store {self._path} is closed")
        op: WriteOp[T] = WriteOp(fn, queue)
        self._send.send_nowait(op)
        return op

    def close(self) -> None:
        """Accept no more work; the writer drains what is queued and returns."""
        if not self._closed:
            self._closed = True
            self._send.close()

    async def run(self) -> None:
        """Commit batches until ``close()``; queued work is never dropped."""
        try:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # Not cancellable on purpose: a commit in flight always finishes and
                # its callers always learn the outcome.
                await anyio.to_thread.run_sync(self._commit, batch, limiter=self._limiter)
                for op in batch:
                    op._resolve()
        finally:
            # Cancelled while work was still queued: those callers get an error, not a hang.
            self.close()
            while True:
                try:
                    op = self._receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                op._error = StoreError(f"task store {self._path} closed before this write")
                op._resolve()
            self._receive.close()

    def _commit(self, batch: list[WriteOp[Any]]) -> None:
        conn = self._conn
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail(batch, exc)
            return
        for op in batch:
            try:
                conn.execute("SAVEPOINT op")
                op._result = op.fn(conn)
                conn.execute("RELEASE op")
            except Exception as exc:
                op._error = _translate(exc, self._path)
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as rollback_exc:  # pragma: no cover - I/O failure path
                    self._abort(batch, rollback_exc)
                    return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(batch, exc)
            return
        elapsed = time.perf_counter() - started
        seen: set[str | None] = set()
        for op in batch:
            if op.queue not in seen:
                seen.add(op.queue)
                if op.queue is not None:
                    hist = self.commits.get(op.queue)
                    if hist is None:
                        hist = self.commits[op.queue] = CommitHistogram()
                    hist.observe(elapsed)

    def _abort(self, batch: list[WriteOp[Any]], exc: sqlite3.Error) -> None:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            self._conn.execute("ROLLBACK")
        self._fail(batch, exc)

    def _fail(self, batch: list[WriteOp[Any]], exc: sqlite3.Error) -> None:
        error = _translate(exc, self._path)
        for op in batch:
            op._result = _UNSET
            op._error = error


def _translate(exc: BaseException, path: str) -> BaseException:
    """sqlite3 errors become StoreError naming the file; other errors pass through."""
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"task store {path}: {_describe(exc)}")
        error.__cause__ = exc
        return error
    return exc
