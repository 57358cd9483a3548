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
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from ._pending import LoopCaller, Outcome, Pending, join_writer, loop_caller, post, settle_all
from .base import CommitHistogram, StoreError

__all__ = ["GroupWriter", "WriteOp"]

_log = logging.getLogger("corral.store")

T = TypeVar("T")

_CATCH_UP_WAIT = 0.05  # seconds; only a stalled loop makes the writer wait this long
_STOP: Any = object()


def _spent(conn: sqlite3.Connection) -> Any:  # pragma: no cover - never called
    raise StoreError("write already applied")


class WriteOp(Pending[T]):
    """One unit of work for the writer; await it for the function's result.

    Its outcome is set on the event loop, after the commit, never by the writer thread.
    """

    __slots__ = ("fn", "queue")
    _unresolved = "write not resolved yet"

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], T],
        queue: str | None,
        event_class: type[anyio.Event] = anyio.Event,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(event_class, loop)
        self.fn = fn
        self.queue = queue

    def _release(self) -> None:
        self.fn = _spent  # drop the closure (and the rows it holds): less for the GC to walk


class Ledger:
    """Gauge counts (pending and dead rows per queue) kept without querying at scrape time.

    Operations stage deltas while they run on the writer thread; the deltas are applied
    only when their transaction commits (and dropped with a rolled-back operation), so
    the counts follow what is on disk. ``counts`` is replaced, never mutated in place,
    so the scraping thread always reads a consistent dict.
    """

    __slots__ = ("_staged", "counts")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._staged: list[tuple[str, str, int]] = []

    def add(self, kind: str, queue: str, delta: int) -> None:
        self._staged.append((kind, queue, delta))

    def mark(self) -> int:
        return len(self._staged)

    def rollback_to(self, mark: int) -> None:
        del self._staged[mark:]

    def discard(self) -> None:
        self._staged.clear()

    def commit(self) -> None:
        if self._staged:
            counts = dict(self.counts)
            for kind, queue, delta in self._staged:
                counts[kind, queue] = counts.get((kind, queue), 0) + delta
            self._staged.clear()
            self.counts = counts


class GroupWriter:
    """Owns the connection's writes on one thread; ``start()`` on the loop, ``close()`` to end."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        max_batch: int = 1024,
        commits: dict[str, CommitHistogram] | None = None,
        ledger: Ledger | None = None,
        on_idle: Callable[[sqlite3.Connection], object] | None = None,
        on_commit: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        self._conn = conn
        self._on_commit = on_commit
        self.ledger = ledger if ledger is not None else Ledger()
        self._on_idle = on_idle
        self._path = path
        self._max_batch = max_batch
        # Submitters append to the deque (atomic under the GIL) and wake the thread only
        # when it is idle, so a burst of submits costs one wake-up, not one per row.
        self._inbox: deque[Any] = deque()
        self._idle = False
        self._wakeup = threading.Event()
        self.commits: dict[str, CommitHistogram] = commits if commits is not None else {}
        self._closed = False
        self._call_soon: LoopCaller | None = None
        self._call_local: LoopCaller | None = None
        self._caught_up = threading.Event()
        self._event_class: type[anyio.Event] = anyio.Event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._call_soon, self._call_local = loop_caller()
        self._event_class = type(anyio.Event())
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.Thread(
            target=self._run, name=f"corral-store-writer:{self._path}", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T], queue: str | None = None) -> WriteOp[T]:
        """Queue ``fn`` for the next commit without waiting."""
        if self._closed:
            raise StoreError(f"task store {self._path} is closed")
        op: WriteOp[T] = WriteOp(fn, queue, self._event_class, self._loop)
        self._inbox.append(op)
        if self._idle:
            self._wakeup.set()
        return op

    async def close(self) -> None:
        """Accept no more work; return once everything queued is committed and published."""
        if self._closed:
            return
        self._closed = True
        self._inbox.append(_STOP)
        self._wakeup.set()
        await join_writer(self._thread, self._call_soon)

    def _run(self) -> None:
        inbox = self._inbox
        stopping = False
        while not stopping:
            if not inbox:
                # Announce idleness *before* the last look, so a submitter that appends
                # after that look sees ``_idle`` and wakes us: no lost wake-up.
                if self._on_idle is not None:
                    with contextlib.suppress(sqlite3.Error):  # housekeeping only
                        self._on_idle(self._conn)
                self._wakeup.clear()
                self._idle = True
                if not inbox:
                    self._wakeup.wait()
                self._idle = False
                continue
            batch: list[WriteOp[Any]] = []
            while inbox and len(batch) < self._max_batch:
                op = inbox.popleft()
                if op is _STOP:
                    stopping = True
                    break
                batch.append(op)
            if batch:
                outcomes = self._commit(batch)
                # Wait (briefly) until the loop has delivered these outcomes and run the
                # callers they woke: their next writes then join the next commit instead
                # of trailing one commit behind the stragglers. This is what keeps a
                # hundred busy submitters at about one fsync per round.
                self._caught_up.clear()
                post(self._call_soon, functools.partial(self._deliver, batch, outcomes))
                self._caught_up.wait(_CATCH_UP_WAIT)

    def _deliver(self, batch: list[WriteOp[Any]], outcomes: list[Outcome]) -> None:
        settle_all(batch, outcomes)
        assert self._call_local is not None
        self._call_local(self._caught_up.set)  # runs after the callers just woken

    def _commit(self, batch: list[WriteOp[Any]]) -> list[tuple[Any, BaseException | None]]:
        conn = self._conn
        ledger = self.ledger
        ledger.discard()
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return self._fail(batch, exc)
        # Fast path: the whole batch in one transaction. Only if an operation fails is
        # the transaction rolled back and redone with one SAVEPOINT per operation, so the
        # failure stays with its caller and its neighbours still commit.
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            for op in batch:
                outcomes.append((op.fn(conn), None))
        except Exception:
            ledger.discard()
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                return self._fail(batch, exc)
            outcomes = []
            for op in batch:
                mark = ledger.mark()
                try:
                    conn.execute("SAVEPOINT op")
                    outcomes.append((op.fn(conn), None))
                    conn.execute("RELEASE op")
                except Exception as exc:
                    ledger.rollback_to(mark)
                    outcomes.append((None, _translate(exc, self._path)))
                    try:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    except sqlite3.Error as rollback_exc:  # pragma: no cover - I/O failure
                        return self._abort(batch, rollback_exc)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return self._abort(batch, exc)
        ledger.commit()
        if self._on_commit is not None:
            with contextlib.suppress(sqlite3.Error):  # bookkeeping after the fact only
                self._on_commit(conn)
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
        self.ledger.discard()
        error = _translate(exc, self._path)
        return [(None, error) for _ in batch]


def _translate(exc: BaseException, path: str) -> BaseException:
    """sqlite3 errors become StoreError naming the file; other errors pass through."""
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"task store {path}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return exc
