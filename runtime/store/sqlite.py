"""SQLiteStore: durable tasks in one local file, no broker to run.

WAL mode with ``synchronous=FULL``: a commit is on disk (fsynced) when it returns, and
the single :class:`~corral.store._writer.GroupWriter` folds every write that arrives
while one commit is in flight into the next one, so a hundred concurrent submits share
one fsync. Files are created mode 0600. A queue is served by one store at a time: the
first ``recover``/``claim`` of a queue takes its lock (``corral.store._owner``), and a
second store on the same file and queue, in any process, gets ``StoreError``. Open
another instance on the same file for another queue or for inspection.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio

from ._checkpoint import Checkpointer
from ._owner import QueueLock, read_marks, reset_marks
from ._schema import SQLITE_CANTOPEN, check_and_migrate, primary_code
from ._wakeup import Wakeup
from ._writer import GroupWriter, Ledger, WriteOp
from .base import (
    CommitHistogram,
    Enqueued,
    NewTask,
    QueueStats,
    RecoveryReport,
    StoreCorrupt,
    StoreError,
    StoreMetrics,
    TaskRecord,
    TaskState,
)

__all__ = ["SQLiteStore"]

_log = logging.getLogger("corral.store")

T = TypeVar("T")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_COLUMNS = (
    "id, queue, name, payload, attempts, max_attempts, not_before, created_at, updated_at, "
    "idempotency_key, last_error, last_traceback"
)
_RECOUNT_EVERY = 30.0  # seconds between recounts while idle (other processes may write)
_INTERRUPTED = "process exited while the task was running (crash, kill or power loss)"
_CANCELLED_PENDING = "cancelled by id before it ran"
_CANCELLED_DOWN = "cancelled by id while its process was down"


def _record(row: Sequence[Any], state: TaskState, result: str | None = None) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        queue=row[1],
        name=row[2],
        payload=row[3],
        attempts=row[4],
        max_attempts=row[5],
        not_before=row[6],
        created_at=row[7],
        updated_at=row[8],
        idempotency_key=row[9],
        last_error=row[10],
        last_traceback=row[11],
        state=state,
        result=result,
    )


def _queue_filter(queue: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("WHERE queue = ?", (queue,)) if queue is not None else ("", ())


class SQLiteStore:
    """A :class:`corral.store.Store` in a local SQLite file.

    ``keep_done`` is how long (seconds) a finished task with an idempotency key is
    remembered, so a duplicate submit returns its result instead of running it again;
    finished tasks without a key are deleted at once. ``max_bytes`` caps the database
    size: a submit that would exceed it fails with :class:`StoreError`.

    ``cancel_check_every`` (seconds) is how often the process serving a queue looks for
    cancellations requested from another process (``corral tasks cancel``) while it runs
    tasks: a running task is cancelled within that time.

    ``read_only=True`` opens an existing database for inspection only (``get``,
    ``list_tasks``, ``list_dead``, ``next_due``, ``stats``; everything else raises
    :class:`StoreError`), without writing anything, also where nothing may be written
    (a read-only directory or file system).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep_done: float = 86_400.0,
        max_bytes: int | None = None,
        max_batch: int = 1024,
        read_only: bool = False,
        cancel_check_every: float = 1.0,
    ) -> None:
        if not isinstance(cancel_check_every, (int, float)) or cancel_check_every <= 0:
            raise ValueError(
                f"SQLiteStore: cancel_check_every must be a number > 0, got {cancel_check_every!r}"
            )
        self.path = os.fspath(path)
        self.cancel_check_every = float(cancel_check_every)
        self._cancel_marks: dict[str, int] = {}  # queue -> last cancelled row reported
        self._cancel_wake = Wakeup()  # set by cancel() through this object
        self.read_only = read_only
        self._reading = anyio.Lock()  # read-only mode: one query at a time on the connection
        self.keep_done = keep_done
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self._conn: sqlite3.Connection | None = None
        self._writer: GroupWriter | None = None
        self._commits: dict[str, CommitHistogram] = {}
        self._ledger = Ledger()
        self._checkpointer: Checkpointer | None = None
        self._counted_at = 0.0
        self._created = False  # this store created the file (a new history starts)
        self._locks: dict[str, QueueLock] = {}  # the queues this store serves
        self._marks: tuple[QueueLock, ...] = ()  # the same, read by the writer thread
        self._stored_tasks = False  # set on the writer thread when a commit may add rows

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> SQLiteStore:
        if self._writer is not None or self._conn is not None:
            raise StoreError(
                f"{self!r} is already open; open a second SQLiteStore on the same file instead"
            )
        if self.read_only:
            self._conn = await anyio.to_thread.run_sync(self._open_read_only)
            return self
        conn = await anyio.to_thread.run_sync(self._open)
        self._conn = conn
        self._writer = GroupWriter(
            conn,
            path=self.path,
            max_batch=self.max_batch,
            commits=self._commits,
            ledger=self._ledger,
            on_idle=self._recount_if_stale,
            on_commit=self._advance_marks,
        )
        self._writer.start()
        self._checkpointer = Checkpointer(self.path)
        self._checkpointer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer, conn = self._writer, self._conn
        self._writer = self._conn = None
        if writer is None or conn is None:
            if conn is not None:  # read-only
                conn.close()
            return
        try:
            with anyio.CancelScope(shield=True):  # queued writes always reach the disk
                await writer.close()
                if self._checkpointer is not None:
                    await anyio.to_thread.run_sync(self._checkpointer.stop)
        finally:
            self._checkpointer = None
            conn.close()  # the last connection to close checkpoints and removes the WAL
            locks, self._locks, self._marks = list(self._locks.values()), {}, ()
            for lock in locks:
                lock.release()

    async def _own(self, queue: str) -> None:
        """Become the one store serving ``queue`` in this file (StoreError if another is)."""
        self._writer_or_raise()
        lock = await anyio.to_thread.run_sync(
            functools.partial(QueueLock, self.path, queue, fresh_database=self._created)
        )
        if queue in self._locks or self._writer is None:  # raced with itself, or closed
            lock.release()
            return
        self._locks[queue] = lock
        self._marks = tuple(self._locks.values())
        self._stored_tasks = True  # record the current mark at the next commit

    def _advance_marks(self, conn: sqlite3.Connection) -> None:
        """After a commit that stored tasks: note the highest sequence number on disk."""
        if self._marks and self._stored_tasks:
            self._stored_tasks = False
            seq = _last_seq(conn)
            for lock in self._marks:
                lock.advance(seq)

    def _open(self) -> sqlite3.Connection:
        """Validate, create (0600) and migrate the file; never overwrite what is not ours."""
        path = Path(self.path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self._check_existing(path)
        except OSError as exc:
            raise StoreError(f"cannot create task database {self.path}: {exc.strerror}") from exc
        else:
            os.close(fd)
            self._created = True
            reset_marks(self.path)  # a new database starts a new history (said loudly)
        self._check_writable(path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open task database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            check_and_migrate(conn, self.path)
            if not self._created:
                self._check_marks(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot switch {self.path} to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer thread does it
            if self.max_bytes is not None:
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                conn.execute(f"PRAGMA max_page_count = {max(1, self.max_bytes // page_size)}")
            self._recount(conn)
            for suffix in ("-wal", "-shm"):
                side = self.path + suffix
                if os.path.exists(side):
                    os.chmod(side, 0o600)
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StoreError(f"cannot open task database {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_writable(self, path: Path) -> None:
        """A healthy file we may not write is not corrupt: say what it is."""
        directory = path.parent
        if not os.access(directory, os.W_OK | os.X_OK):
            where = f"its directory {directory} is read-only"
        elif not os.access(path, os.W_OK):
            where = "the file is read-only"
        else:
            return
        raise StoreError(
            f"cannot open task database {self.path} for writing: {where} (SQLite writes the "
            f"database and creates {path.name}-wal and {path.name}-shm beside it); "
            "`corral tasks list/show/dlq/stats` can still inspect it read-only"
        )

    def _open_read_only(self) -> sqlite3.Connection:
        """Open for reading only; never create, migrate or write anything."""
        path = Path(self.path)
        if not path.exists():
            raise StoreError(f"no task database at {self.path}")
        self._check_existing(path)
        wal = Path(f"{self.path}-wal")
        base = f"file:{urllib.parse.quote(str(path.absolute()))}"
        # With no WAL content the main file is the whole truth: ``immutable`` reads it
        # without creating -wal/-shm. A WAL left by a crash (or a live writer) must be
        # read through ``mode=ro``, which needs the -shm file to exist or be creatable.
        uris = (
            [f"{base}?mode=ro", f"{base}?immutable=1"] if wal.exists() else [f"{base}?immutable=1"]
        )
        for uri in uris:
            try:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open task database {self.path}: {exc}") from exc
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                check_and_migrate(conn, self.path, read_only=True)
            except StoreError as exc:
                conn.close()
                if uri.endswith("mode=ro") and primary_code(exc.__cause__) == SQLITE_CANTOPEN:
                    _log.warning(
                        "%s: its -wal file cannot be read without the -shm file, which cannot "
                        "be created here (read-only directory); showing the database as of its "
                        "last checkpoint: changes still in %s are not shown",
                        self.path,
                        wal.name,
                    )
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            try:
                if uri.endswith("mode=ro") or not wal.exists():  # the whole file is visible
                    self._check_marks(conn)
                self._recount(conn)
            except BaseException:
                conn.close()
                raise
            return conn
        raise AssertionError("unreachable")  # pragma: no cover - the last URI returns or raises

    def _check_marks(self, conn: sqlite3.Connection) -> None:
        """StoreCorrupt if tasks some queue's owner saw committed are no longer in the file."""
        marks = read_marks(self.path)  # first: a mark is written only after its commit
        last = _last_seq(conn)
        for mark in marks:
            if mark.seq > last:
                raise StoreCorrupt(
                    f"{self.path} has lost acknowledged tasks: queue {mark.queue!r} had tasks "
                    f"committed up to #{mark.seq}, but the database ends at #{last} (its -wal "
                    "file was probably deleted or truncated after a crash). Restore the "
                    "database with its -wal file from a backup; to accept the loss, delete "
                    f"{mark.path}"
                )

    def _check_existing(self, path: Path) -> None:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise StoreCorrupt(f"{self.path} is not a regular file")
            if info.st_size == 0:
                return
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"cannot read task database {self.path}: {exc.strerror}") from exc
        if head != _SQLITE_MAGIC:
            raise StoreCorrupt(
                f"{self.path} is not a SQLite database (bad header); refusing to overwrite it"
            )

    def _writer_or_raise(self) -> GroupWriter:
        if self._writer is None:
            if self.read_only and self._conn is not None:
                raise StoreError(f"{self!r} is open read-only: it cannot change tasks")
            raise StoreError(f"{self!r} is not open: use 'async with store:' first")
        return self._writer

    def _submit(self, fn: Callable[[sqlite3.Connection], T], queue: str | None) -> WriteOp[T]:
        return self._writer_or_raise().submit(fn, queue)

    async def _read(self, fn: Callable[[sqlite3.Connection], T], queue: str | None = None) -> T:
        """A query: through the writer (in commit order), or on a thread when read-only."""
        if not self.read_only:
            return await self._submit(fn, queue)
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self!r} is not open: use 'async with store:' first")
        async with self._reading:
            try:
                return await anyio.to_thread.run_sync(fn, conn)
            except sqlite3.Error as exc:
                raise StoreError(f"task store {self.path}: {type(exc).__name__}: {exc}") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T], queue: str | None = None) -> T:
        return await self._submit(fn, queue)

    # -- the durable queue's path ------------------------------------------------------
    def enqueue_nowait(self, tasks: Sequence[NewTask]) -> WriteOp[list[Enqueued]]:
        tasks = list(tasks)
        queue = tasks[0].queue if tasks else None
        return self._submit(lambda conn: self._enqueue(conn, tasks), queue)

    def enqueue(self, tasks: Sequence[NewTask]) -> WriteOp[list[Enqueued]]:
        return self.enqueue_nowait(tasks)

    def _enqueue(self, conn: sqlite3.Connection, tasks: list[NewTask]) -> list[Enqueued]:
        out: list[Enqueued] = []
        for task in tasks:
            if task.idempotency_key is not None:
                existing = self._find_key(conn, task.queue, task.idempotency_key)
                if existing is not None:
                    out.append(Enqueued(existing.id, False, existing.state, existing))
                    continue
            conn.execute(
                "INSERT INTO tasks (id, queue, name, payload, attempts, max_attempts, not_before,"
                " idempotency_key, created_at, updated_at, state)"
                " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, 'pending')",
                (
                    task.id,
                    task.queue,
                    task.name,
                    task.payload,
                    task.max_attempts,
                    task.not_before,
                    task.idempotency_key,
                    task.created_at,
                    task.created_at,
                ),
            )
            self._ledger.add("pending", task.queue, 1)
            self._stored_tasks = True
            out.append(Enqueued(task.id, True, "pending"))
        return out

    def _find_key(self, conn: sqlite3.Connection, queue: str, key: str) -> TaskRecord | None:
        row = conn.execute(
            f"SELECT {_COLUMNS}, state FROM tasks WHERE queue = ? AND idempotency_key = ?",
            (queue, key),
        ).fetchone()
        if row is not None:
            return _record(row, row[12])
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? AND idempotency_key = ?",
            (queue, key),
        ).fetchone()
        if row is not None:
            return _record(row, "dead")
        row = conn.execute(
            f"SELECT {_COLUMNS}, result FROM done WHERE queue = ? AND idempotency_key = ?"
            " ORDER BY updated_at DESC LIMIT 1",
            (queue, key),
        ).fetchone()
        return None if row is None else _record(row, "done", row[12])

    async def claim(self, queue: str, *, limit: int, now: float) -> list[TaskRecord]:
        if queue not in self._locks:
            await self._own(queue)

        def op(conn: sqlite3.Connection) -> list[TaskRecord]:
            rows = conn.execute(
                f"UPDATE tasks SET state = 'running', attempts = attempts + 1, updated_at = ?"
                f" WHERE seq IN (SELECT seq FROM tasks WHERE queue = ? AND state = 'pending'"
                f" AND not_before <= ? ORDER BY not_before, seq LIMIT ?)"
                f" RETURNING {_COLUMNS}, seq",
                (now, queue, now, limit),
            ).fetchall()
            rows.sort(key=lambda r: (r[6], r[12]))
            return [_record(r, "running") for r in rows]

        return await self._run(op, queue)

    async def complete(self, task_id: str, *, result: str | None, now: float) -> None:
        keep = self.keep_done > 0

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                f"DELETE FROM tasks WHERE id = ? RETURNING {_COLUMNS}", (task_id,)
            ).fetchone()
            if row is not None:
                self._ledger.add("pending", row[1], -1)
            if keep and row is not None and row[9] is not None:  # keyed: remember it
                conn.execute(
                    f"INSERT INTO done ({_COLUMNS}, result)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row[:8], now, *row[9:], result),
                )

        await self._run(op, None)

    async def retry_later(
        self, task_id: str, *, not_before: float, error: str, traceback: str, now: float
    ) -> TaskState:
        def op(conn: sqlite3.Connection) -> TaskState:
            if self._cancel_flagged(conn, task_id, error, traceback, now):
                return "cancelled"
            conn.execute(
                "UPDATE tasks SET state = 'pending', not_before = ?, last_error = ?,"
                " last_traceback = ?, updated_at = ? WHERE id = ?",
                (not_before, error, traceback, now, task_id),
            )
            return "pending"

        return await self._run(op, None)

    async def dead_letter(
        self, task_id: str, *, error: str, traceback: str, now: float
    ) -> TaskState:
        def op(conn: sqlite3.Connection) -> TaskState:
            if self._cancel_flagged(conn, task_id, error, traceback, now):
                return "cancelled"
            self._move(conn, "dead_letters", "id = ?", (task_id,), error, traceback, now)
            return "dead"

        return await self._run(op, None)

    def _cancel_flagged(
        self, conn: sqlite3.Connection, task_id: str, error: str, traceback: str, now: float
    ) -> bool:
        """A failed attempt of a task whose cancel was requested: cancel it, never retry."""
        where = "id = ? AND cancel_requested IS NOT NULL"
        return bool(self._move(conn, "cancelled", where, (task_id,), error, traceback, now))

    def _move(
        self,
        conn: sqlite3.Connection,
        table: str,
        where: str,
        params: tuple[Any, ...],
        error: str | None,
        traceback: str | None,
        now: float,
    ) -> list[str]:
        """Move live rows to ``dead_letters`` or ``cancelled``; returns their ids."""
        moved = conn.execute(f"SELECT id, queue FROM tasks WHERE {where}", params).fetchall()
        for _, queue in moved:
            self._ledger.add("pending", queue, -1)
            if table == "dead_letters":
                self._ledger.add("dead", queue, 1)
        if not moved:
            return []
        conn.execute(
            f"INSERT INTO {table} ({_COLUMNS}) SELECT id, queue, name, payload, attempts,"
            " max_attempts, not_before, created_at, ?, idempotency_key,"
            " coalesce(?, last_error), coalesce(?, last_traceback)"
            f" FROM tasks WHERE {where} ORDER BY seq",
            (now, error, traceback, *params),
        )
        conn.execute(f"DELETE FROM tasks WHERE {where}", params)
        return [task_id for task_id, _ in moved]

    async def recover(self, queue: str, *, now: float) -> RecoveryReport:
        if queue not in self._locks:
            await self._own(queue)

        def op(conn: sqlite3.Connection) -> RecoveryReport:
            # A cancel requested while the process that ran the task was down wins.
            where = "queue = ? AND state = 'running' AND cancel_requested IS NOT NULL"
            self._move(conn, "cancelled", where, (queue,), _CANCELLED_DOWN, None, now)
            dead = self._move(
                conn,
                "dead_letters",
                "queue = ? AND state = 'running' AND attempts >= max_attempts",
                (queue,),
                _INTERRUPTED,
                "",
                now,
            )
            self._cancel_marks[queue] = _top_cancelled(conn, queue)  # reported from here on
            requeued = [
                r[0]
                for r in conn.execute(
                    "UPDATE tasks SET state = 'pending', last_error = ?, updated_at = ?"
                    " WHERE queue = ? AND state = 'running' RETURNING id",
                    (_INTERRUPTED, now, queue),
                )
            ]
            return RecoveryReport(requeued=requeued, dead=dead)

        return await self._run(op, queue)

    async def next_due(self, queue: str) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(not_before) FROM tasks WHERE queue = ? AND state = 'pending'",
                (queue,),
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(op, queue)

    # -- cancel by id --------------------------------------------------------------------
    async def cancel(self, task_id: str, *, now: float | None = None) -> TaskState | None:
        when = time.time() if now is None else now

        def op(conn: sqlite3.Connection) -> TaskState | None:
            row = conn.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return _finished_state(conn, task_id)
            if row[0] == "pending":
                self._move(conn, "cancelled", "id = ?", (task_id,), _CANCELLED_PENDING, None, when)
                return "pending"
            conn.execute(
                "UPDATE tasks SET cancel_requested = coalesce(cancel_requested, ?) WHERE id = ?",
                (when, task_id),
            )
            return "running"

        state = await self._run(op)
        if state in ("pending", "running"):  # this process's runner looks now
            self._cancel_wake.set()
        return state

    async def record_cancelled(self, task_id: str, *, error: str, now: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            self._move(conn, "cancelled", "id = ?", (task_id,), error, None, now)

        await self._run(op)

    async def cancel_requests(self, queue: str, running: Collection[str]) -> list[str]:
        """Wait up to ``cancel_check_every`` (less after a cancel through this store), then
        return running ids with a cancel request and tasks cancelled since the last call."""
        await self._cancel_wake.wait(self.cancel_check_every)
        mark = self._cancel_marks.get(queue)
        wanted = list(running)

        def op(conn: sqlite3.Connection) -> tuple[list[str], int]:
            top = _top_cancelled(conn, queue)
            since = top if mark is None else mark
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM cancelled WHERE queue = ? AND seq > ?", (queue, since)
                )
            ]
            for start in range(0, len(wanted), 500):  # stay below SQLite's variable limit
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                ids += [
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM tasks WHERE id IN ({marks})"
                        " AND cancel_requested IS NOT NULL",
                        chunk,
                    )
                ]
            return ids, top

        ids, self._cancel_marks[queue] = await self._read(op, queue)
        return ids

    # -- inspection and repair ---------------------------------------------------------
    async def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            found: set[str] = set()
            for table in ("tasks", "dead_letters", "done", "cancelled"):
                found.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                        (prefix, prefix + "\U0010ffff", limit),
                    )
                )
            return sorted(found)[:limit]

        return await self._read(op)

    async def get(self, task_id: str) -> TaskRecord | None:
        def op(conn: sqlite3.Connection) -> TaskRecord | None:
            row = conn.execute(f"SELECT {_COLUMNS}, state FROM tasks WHERE id = ?", (task_id,))
            found = row.fetchone()
            if found is not None:
                return _record(found, found[12])
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ?", (task_id,)
            ).fetchone()
            if found is not None:
                return _record(found, "dead")
            found = conn.execute(
                f"SELECT {_COLUMNS}, result FROM done WHERE id = ?", (task_id,)
            ).fetchone()
            if found is not None:
                return _record(found, "done", found[12])
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM cancelled WHERE id = ?", (task_id,)
            ).fetchone()
            return None if found is None else _record(found, "cancelled")

        return await self._read(op)

    async def list_tasks(
        self, *, queue: str | None = None, state: TaskState | None = None, limit: int = 100
    ) -> list[TaskRecord]:
        if state == "dead":
            return await self.list_dead(queue=queue, limit=limit)

        def op(conn: sqlite3.Connection) -> list[TaskRecord]:
            clauses: list[str] = []
            params: list[Any] = []
            if queue is not None:
                clauses.append("queue = ?")
                params.append(queue)
            if state in ("done", "cancelled"):  # finished: a table of their own
                where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
                result = "result" if state == "done" else "NULL"
                rows = conn.execute(
                    f"SELECT {_COLUMNS}, {result} FROM {state} {where} ORDER BY seq LIMIT ?",
                    (*params, limit),
                ).fetchall()
                return [_record(r, state, r[12]) for r in rows]
            if state is not None:
                clauses.append("state = ?")
                params.append(state)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            rows = conn.execute(
                f"SELECT {_COLUMNS}, state FROM tasks {where} ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [_record(r, r[12]) for r in rows]

        return await self._read(op)

    async def list_dead(self, *, queue: str | None = None, limit: int = 100) -> list[TaskRecord]:
        where, params = _queue_filter(queue)

        def op(conn: sqlite3.Connection) -> list[TaskRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters {where} ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [_record(r, "dead") for r in rows]

        return await self._read(op)

    async def requeue_dead(
        self, task_ids: Sequence[str] | None, *, now: float, queue: str | None = None
    ) -> list[str]:
        ids = None if task_ids is None else list(task_ids)

        def op(conn: sqlite3.Connection) -> list[str]:
            if ids is None:
                where, params = _queue_filter(queue)
                query = f"SELECT id, queue FROM dead_letters {where}"
                selected = conn.execute(query, params).fetchall()
            else:
                selected = []
                for task_id in ids:
                    row = conn.execute(
                        "SELECT id, queue FROM dead_letters WHERE id = ?", (task_id,)
                    ).fetchone()
                    if row is not None:
                        selected.append(row)
            for task_id, task_queue in selected:
                self._ledger.add("dead", task_queue, -1)
                self._ledger.add("pending", task_queue, 1)
                conn.execute(
                    "INSERT INTO tasks (id, queue, name, payload, attempts, max_attempts,"
                    " not_before, created_at, updated_at, idempotency_key, last_error,"
                    " last_traceback, state) SELECT id, queue, name, payload, 0, max_attempts,"
                    " ?, created_at, ?, idempotency_key, last_error, last_traceback, 'pending'"
                    " FROM dead_letters WHERE id = ?",
                    (now, now, task_id),
                )
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (task_id,))
            return [task_id for task_id, _ in selected]

        return await self._run(op)

    async def purge_dead(self, *, queue: str | None = None) -> int:
        where, params = _queue_filter(queue)

        def op(conn: sqlite3.Connection) -> int:
            rows = conn.execute(f"DELETE FROM dead_letters {where} RETURNING queue", params)
            purged = 0
            for (task_queue,) in rows.fetchall():
                self._ledger.add("dead", task_queue, -1)
                purged += 1
            return purged

        return await self._run(op)

    async def purge_done(self, *, older_than: float) -> int:
        """Forget done and cancelled records finished before ``older_than``."""

        def op(conn: sqlite3.Connection) -> int:
            done = conn.execute("DELETE FROM done WHERE updated_at < ?", (older_than,)).rowcount
            query = "DELETE FROM cancelled WHERE updated_at < ?"
            return int(done) + int(conn.execute(query, (older_than,)).rowcount)

        return await self._run(op)

    async def stats(self) -> list[QueueStats]:
        return await self._read(_stats)

    # -- metrics -------------------------------------------------------------------------
    def metrics_snapshot(self) -> StoreMetrics:
        """Counts kept by the writer (no query: a scrape may run on the event loop)."""
        pending: dict[str, int] = {}
        dead: dict[str, int] = {}
        for (kind, queue), count in self._ledger.counts.items():
            if count:
                (pending if kind == "pending" else dead)[queue] = count
        commits = {queue: _copy(hist) for queue, hist in list(self._commits.items())}
        return StoreMetrics(pending, dead, commits)

    def _recount(self, conn: sqlite3.Connection) -> None:
        """Read the true counts (at open, and now and then to catch other processes)."""
        counts: dict[tuple[str, str], int] = {}
        for queue, count in conn.execute("SELECT queue, count(*) FROM tasks GROUP BY queue"):
            counts["pending", queue] = count
        for queue, count in conn.execute("SELECT queue, count(*) FROM dead_letters GROUP BY queue"):
            counts["dead", queue] = count
        self._ledger.counts = counts
        self._counted_at = time.monotonic()

    def _recount_if_stale(self, conn: sqlite3.Connection) -> None:
        if time.monotonic() - self._counted_at > _RECOUNT_EVERY:
            self._recount(conn)


def _top_cancelled(conn: sqlite3.Connection, queue: str) -> int:
    row = conn.execute("SELECT max(seq) FROM cancelled WHERE queue = ?", (queue,)).fetchone()
    return 0 if row[0] is None else int(row[0])


def _finished_state(conn: sqlite3.Connection, task_id: str) -> TaskState | None:
    """The state of a task that is no longer live (None when no table has it)."""
    for table, state in (("done", "done"), ("dead_letters", "dead"), ("cancelled", "cancelled")):
        if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (task_id,)).fetchone():
            return state  # type: ignore[return-value]
    return None


def _last_seq(conn: sqlite3.Connection) -> int:
    """The largest task sequence number ever used in the file (AUTOINCREMENT keeps it)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tasks'").fetchone()
    return 0 if row is None else int(row[0])


def _copy(hist: CommitHistogram) -> CommitHistogram:
    return CommitHistogram(counts=list(hist.counts), total=hist.total, count=hist.count)


def _stats(conn: sqlite3.Connection) -> list[QueueStats]:
    table: dict[str, dict[str, Any]] = {}

    def slot(queue: str) -> dict[str, Any]:
        return table.setdefault(
            queue,
            {"pending": 0, "running": 0, "dead": 0, "done": 0, "cancelled": 0, "oldest": None},
        )

    for queue, state, count, oldest in conn.execute(
        "SELECT queue, state, count(*), min(created_at) FROM tasks GROUP BY queue, state"
    ):
        entry = slot(queue)
        entry[state] = count
        if state == "pending":
            entry["oldest"] = oldest
    for queue, count in conn.execute("SELECT queue, count(*) FROM dead_letters GROUP BY queue"):
        slot(queue)["dead"] = count
    for queue, count in conn.execute("SELECT queue, count(*) FROM done GROUP BY queue"):
        slot(queue)["done"] = count
    for queue, count in conn.execute("SELECT queue, count(*) FROM cancelled GROUP BY queue"):
        slot(queue)["cancelled"] = count
    return [
        QueueStats(
            queue=queue,
            pending=entry["pending"],
            running=entry["running"],
            dead=entry["dead"],
            done=entry["done"],
            oldest_pending_at=entry["oldest"],
            cancelled=entry["cancelled"],
        )
        for queue, entry in sorted(table.items())
    ]
