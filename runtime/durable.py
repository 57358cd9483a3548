"""The durable path of a TaskQueue: the store is the queue, the workers only execute.

``submit`` validates (registered name, JSON arguments), group-commits the row and
returns: the task is on disk. A feeder claims due rows (one attempt counted and
persisted per claim, before the task starts) only as fast as workers free up, and
hands them to the queue's workers; the outcome is written back (done, retry with a
persisted ``not_before``, or the dead-letter table). On start, rows a dead process
left running are re-queued (or dead-lettered when that was their last attempt) and
replayed. Execution is at least once: a crash after the task's side effects but
before its completion commit runs it again.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._due import check_priority, delay_seconds
from .errors import QueueClosed, QueueFull, TaskCancelled
from .handles import TaskHandle
from .metrics import Buckets, histogram_family
from .middleware import Middleware, run_chain
from .registry import encode_payload, lookup, spec_for
from .retry import Retry
from .store.base import (
    COMMIT_BUCKETS,
    Enqueued,
    EnqueueTicket,
    NewTask,
    Store,
    StoreCorrupt,
    StoreError,
    TaskDeadLettered,
    TaskRecord,
    TaskState,
    WaitsForWork,
    WatchesCancels,
)
from .task_info import TaskInfo

__all__ = ["AttemptCancelled", "DurableHandle", "DurableRunner"]

T = TypeVar("T")

#: ``stamp(info)`` runs in the submitter's context at a durable submit and returns headers
#: to store with the task (tracing: the producer span's ``traceparent``), or None.
Stamp = Callable[[TaskInfo], Mapping[str, str] | None]

#: ``dispatch(job, task_name, info)`` runs ``job()`` on one of the queue's workers; it must
#: not block, and never sees more than ``slots`` jobs at a time.
Dispatch = Callable[[Callable[[], Coroutine[Any, Any, None]], str, TaskInfo], object]

_log = logging.getLogger("corral.durable")

# Task ids: a counter mixed into 64 bits, then 64 random bits per process. Unique across
# processes and restarts without a syscall per submit (uuid4 reads the OS entropy pool
# every time). The mix (xor with a per-process seed, times an odd constant, mod 2**64) is
# a bijection, so ids stay unique within a process, and their first characters differ
# from task to task: a short prefix names one task (``corral tasks show 3fa9c1``).
_ID_PREFIX = secrets.token_hex(8)
_ID_SEED = secrets.randbits(64)
_ID_MIX = 0x9E3779B97F4A7C15
_ID_MASK = (1 << 64) - 1
_id_counter = itertools.count(1)


def _new_id() -> str:
    return f"{((next(_id_counter) ^ _ID_SEED) * _ID_MIX) & _ID_MASK:016x}{_ID_PREFIX}"


_STORE_METHODS = ("enqueue_nowait", "claim", "complete", "retry_later", "dead_letter", "recover")

#: Longest the feeder sleeps without looking at the store (another process may add rows).
_IDLE_POLL = 1.0


class RetryScheduled(Exception):
    """An attempt failed and its retry is stored: the worker counts the attempt as an
    error (so failure-rate alerts see it) but does not report it; only the final failure
    reaches ``on_error`` hooks and Sentry."""

    def __init__(self, task_id: str, name: str, attempt: int) -> None:
        super().__init__(f"task {name!r} (id {task_id}) attempt {attempt} failed; retry stored")


class AttemptCancelled(Exception):
    """An attempt ended because its task was cancelled by id: the worker counts it as
    ``cancelled`` (not an error) and reports nothing; the handle raises TaskCancelled."""


class DurableHandle(TaskHandle[Any]):
    """A task handle that also knows when its row reached the disk.

    ``await q.submit(...)`` returns only after the commit, so its handle is persisted
    already. ``q.submit_nowait(...)`` returns at once: the task is *accepted*, and it is
    durable after ``await handle.persisted()`` (which raises the store's error if the
    write failed, in which case the handle fails with the same error).
    """

    __slots__ = ("_ticket",)

    def __init__(self, name: str, task_id: str) -> None:
        super().__init__(name, task_id=task_id, canceller=_refuse_cancel)
        self._ticket: EnqueueTicket | None = None

    async def persisted(self) -> None:
        """Return once the task's row is committed (fsynced); raise if it never will be."""
        ticket = self._ticket
        if ticket is not None:
            await ticket


def _refuse_cancel(handle: TaskHandle[Any]) -> bool:
    """Durable tasks are cancelled by id (``await queue.cancel(id)``, ``corral tasks
    cancel``): that is a store write, which a synchronous ``handle.cancel()`` cannot wait for."""
    return False


def _json_or_none(value: Any) -> str | None:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


class DurableRunner:
    """Feeds one queue's workers from a :class:`~corral.store.Store` (see module doc)."""

    def __init__(
        self,
        queue: str,
        store: Store,
        *,
        dispatch: Dispatch,
        slots: int,
        capacity: int,
        retry: Retry | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        middleware: tuple[Middleware, ...] = (),
        count_cancelled: Callable[[str], object] | None = None,
        stamps: tuple[Stamp, ...] = (),
    ) -> None:
        if slots < 1:
            raise ValueError(f"durable queue {queue!r}: slots must be >= 1, got {slots}")
        self.queue = queue
        self.store = store
        self.retry = retry if retry is not None else Retry()
        self.clock = clock
        self._rng = rng or random.Random()
        self._dispatch = dispatch
        self._middleware = middleware
        self._slots = slots
        self._capacity = capacity
        self._in_flight = 0
        self._outstanding = 0  # rows of this queue not finished (pending + running)
        self._handles: dict[str, DurableHandle] = {}
        self._by_key: dict[str, DurableHandle] = {}
        self._wake = anyio.Event()
        self._room = anyio.Event()
        self._drained = anyio.Event()
        self._fed = anyio.Event()
        self._feed_scope: anyio.CancelScope | None = None
        self._accepting = False
        self._draining = False
        self._opened = False
        self.retries: dict[str, int] = {}  # task name -> retries scheduled (a counter)
        self._unpersisted: list[str] = []  # store failures to name at close
        # cancel by id: the scope of each attempt running here, the ids whose cancel was
        # asked, and the watcher's wake-up (something started or was submitted)
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancel_requested: set[str] = set()
        self._watch_wake = anyio.Event()
        self._count_cancelled = count_cancelled
        self._stamps = stamps  # empty unless an observer stores headers (tracing)

    # -- lifecycle ---------------------------------------------------------------------
    @classmethod
    def for_queue(
        cls,
        queue: str,
        store: Store,
        *,
        workers: int,
        capacity: int,
        dispatch: Dispatch,
        middleware: tuple[Middleware, ...] = (),
        count_cancelled: Callable[[str], object] | None = None,
        stamps: tuple[Stamp, ...] = (),
    ) -> DurableRunner:
        """The runner behind ``TaskQueue(name, store=...)``; checks the store first."""
        missing = [m for m in _STORE_METHODS if not callable(getattr(store, m, None))]
        if missing:
            raise TypeError(
                f"TaskQueue {queue!r}: store={store!r} is not a corral task store "
                f"(missing {', '.join(missing)}); use corral.SQLiteStore(path)"
            )
        # Claim no more than can start now: an attempt is counted at claim time.
        return cls(
            queue,
            store,
            dispatch=dispatch,
            slots=min(workers, capacity),
            capacity=capacity,
            middleware=middleware,
            count_cancelled=count_cancelled,
            stamps=stamps,
        )

    async def open(self) -> None:
        """Open the store and re-queue what a dead process left running; accept submits
        (the rows wait on disk until ``feed`` runs)."""
        await self.store.__aenter__()
        self._opened = True
        try:
            report = await self.store.recover(self.queue, now=self.clock())
            if report.dead:
                _log.warning(
                    "durable queue %r: %d task(s) moved to the dead-letter table: their last "
                    "allowed attempt was interrupted by the death of the process",
                    self.queue,
                    len(report.dead),
                )
            stats = {s.queue: s for s in await self.store.stats()}
            mine = stats.get(self.queue)
            self._outstanding = 0 if mine is None else mine.pending + mine.running
        except BaseException:
            await self.close()
            raise
        self._accepting = True

    async def feed(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim due tasks for the workers until ``stop_feeding``; start it with
        ``await task_group.start(runner.feed)`` once the workers are up."""
        self._accepting = True
        try:
            with anyio.CancelScope() as scope:
                self._feed_scope = scope
                task_status.started()
                async with anyio.create_task_group() as tg:
                    if isinstance(self.store, WatchesCancels):
                        tg.start_soon(self._watch_cancels, self.store)
                    await self._feed_with_retries()
                    tg.cancel_scope.cancel()
        finally:
            self._accepting = False
            self._drained.set()
            self._fed.set()

    async def _feed_with_retries(self) -> None:
        while True:
            try:
                await self._feed_until_error()
                return
            except StoreError as exc:
                if self._draining:
                    # Shutting down on a store that fails (disk full): waiting for
                    # it would never end. What is stored stays stored.
                    self._unpersisted.append(
                        f"draining stopped with {self._outstanding} task(s) not run "
                        f"(they stay stored): {exc}"
                    )
                    return
                # A transient store failure (disk full, locked file) must not kill
                # the queue: report it and look again; the rows are still on disk.
                _log.exception("durable queue %r: reading the task store failed", self.queue)
                await anyio.sleep(_IDLE_POLL)

    async def drain(self) -> None:
        """Refuse new submits; return once no task is due or running (future retries stay)."""
        self._accepting = False
        if self._feed_scope is None:
            return
        self._draining = True
        self._wake.set()
        await self._drained.wait()

    async def stop_feeding(self) -> None:
        """Claim nothing more; what is claimed already stays with the workers to finish."""
        self._accepting = False
        self._room.set()
        if self._feed_scope is not None:
            self._feed_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._fed.wait()

    async def close(self) -> None:
        """Stop feeding, close the store, resolve handles of tasks left stored. Idempotent."""
        await self.stop_feeding()
        if not self._opened:
            return
        self._opened = False
        try:
            await self.store.__aexit__(None, None, None)
        finally:
            if self._unpersisted:
                _log.error(
                    "durable queue %r closed after task store failures; not persisted: %s. "
                    "Tasks already stored stay stored and run after the next start",
                    self.queue,
                    "; ".join(self._unpersisted),
                )
                self._unpersisted = []
            for handle in list(self._handles.values()):
                handle._set_exception(
                    TaskCancelled(
                        f"queue {self.queue!r} closed before task {handle.name!r} "
                        f"(id {handle.id}) finished; it stays stored and runs after a restart"
                    )
                )
            self._handles.clear()
            self._by_key.clear()

    # -- metrics ----------------------------------------------------------------------------
    def metric_families(self) -> Iterable[Metric]:
        """Store gauges, durable retries and commit latency, read at scrape time."""
        snapshot = self.store.metrics_snapshot()
        q = [self.queue]
        pending = GaugeMetricFamily(
            "corral_store_pending", "Durable tasks stored and not finished", labels=["queue"]
        )
        pending.add_metric(q, snapshot.pending.get(self.queue, 0))
        yield pending
        dead = GaugeMetricFamily(
            "corral_store_dead_letters", "Tasks in the dead-letter table", labels=["queue"]
        )
        dead.add_metric(q, snapshot.dead.get(self.queue, 0))
        yield dead
        retries = CounterMetricFamily(
            "corral_task_retries_total",
            "Retries scheduled for failed tasks",
            labels=["queue", "task"],
        )
        for name, count in list(self.retries.items()):
            retries.add_metric([self.queue, name], count)
        yield retries
        commits = snapshot.commits.get(self.queue)
        buckets = Buckets(COMMIT_BUCKETS)
        if commits is not None:
            buckets.counts = list(commits.counts)
            buckets.total = commits.total
        yield histogram_family(
            "corral_store_commit_seconds",
            "Time of one group commit (fsync included)",
            ["queue"],
            [((self.queue,), buckets)],
        )

    # -- submitting --------------------------------------------------------------------
    def _prepare(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        idempotency_key: str | None,
        delay: float | None = None,
        not_before: datetime | None = None,
        key: Hashable | None = None,
        priority: int | None = None,
    ) -> tuple[NewTask, DurableHandle]:
        spec = spec_for(fn)
        if not spec.is_async:
            raise TypeError(
                f"task {spec.name!r} is not an async function: TaskQueue runs coroutines on "
                "the event loop; use corral.sync for blocking code"
            )
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError(f"idempotency_key must be a str, got {type(idempotency_key).__name__}")
        where = f"durable queue {self.queue!r}"
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"{where}: key= must be a str in durable mode (it is stored), got "
                f"{type(key).__name__}"
            )
        if key == "":
            raise ValueError(f"{where}: key= must not be empty")
        if priority is not None:
            check_priority(where, priority)
            if priority and not getattr(self.store, "supports_priority", False):
                raise TypeError(
                    f"{where}: {self.store!r} does not support priority= "
                    "(SQLiteStore and RedisStore do)"
                )
        task_id = _new_id()
        handle = DurableHandle(spec.name, task_id)
        headers = self._stamp(spec.name, handle, args, kwargs) if self._stamps else None
        payload = encode_payload(spec, args, kwargs, headers)
        policy = spec.retry or self.retry
        now = self.clock()
        due = now
        if delay is not None or not_before is not None:
            # Stored as the row's not_before, the same field a retry's backoff uses: the
            # task is not claimed (so holds no lease) before then, restart or not.
            due += delay_seconds(  # type: ignore[operator]  # not None: one was given
                where, delay, not_before, now=now
            )
        task = NewTask(
            id=task_id,
            queue=self.queue,
            name=spec.name,
            payload=payload,
            max_attempts=policy.max_attempts,
            not_before=due,
            created_at=now,
            idempotency_key=idempotency_key,
            key=key if isinstance(key, str) else None,
            priority=priority or 0,
        )
        return task, handle

    def _stamp(
        self, name: str, handle: DurableHandle, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, str] | None:
        """Headers the observers store with the task (in the submitter's context)."""
        info = TaskInfo(self.queue, name, handle, args, kwargs, None)
        headers: dict[str, str] = {}
        for stamp in self._stamps:
            try:
                headers.update(stamp(info) or {})
            except Exception:
                _log.exception("durable queue %r: stamping task %s failed", self.queue, handle.id)
        return headers or None

    def _check_open(self) -> None:
        if not self._accepting:
            raise QueueClosed(f"durable queue {self.queue!r} is not open (or is closing)")

    def submit_nowait(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        not_before: datetime | None = None,
        key: Hashable | None = None,
        priority: int | None = None,
    ) -> DurableHandle:
        """Accept a task without waiting for the disk: durable after ``handle.persisted()``."""
        task, handle = self._prepare(
            fn, args, kwargs, idempotency_key, delay, not_before, key, priority
        )
        self._check_open()
        existing = self._by_key.get(idempotency_key) if idempotency_key is not None else None
        if existing is not None:
            return existing
        if self._outstanding >= self._capacity:
            raise QueueFull(
                f"durable queue {self.queue!r} holds {self._outstanding} unfinished tasks "
                f"(capacity {self._capacity})"
            )
        return self._enqueue(task, handle)

    async def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        delay: float | None = None,
        not_before: datetime | None = None,
        key: Hashable | None = None,
        priority: int | None = None,
    ) -> DurableHandle:
        """Persist a task (committed and fsynced when this returns) and return its handle."""
        task, handle = self._prepare(
            fn, args, kwargs, idempotency_key, delay, not_before, key, priority
        )
        self._check_open()
        existing = self._by_key.get(idempotency_key) if idempotency_key is not None else None
        if existing is not None:
            await existing.persisted()
            return existing
        if self._outstanding >= self._capacity:
            await self._wait_for_room(timeout)
            self._check_open()
            existing = self._by_key.get(idempotency_key) if idempotency_key is not None else None
            if existing is not None:
                await existing.persisted()
                return existing
        handle = self._enqueue(task, handle)
        await handle._ticket  # type: ignore[misc]  # set by _enqueue: the commit
        return handle

    async def _wait_for_room(self, timeout: float | None) -> None:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            while self._outstanding >= self._capacity and self._accepting:
                if self._room.is_set():
                    self._room = anyio.Event()
                await self._room.wait()
            return
        raise QueueFull(
            f"durable queue {self.queue!r} stayed full ({self._capacity} unfinished tasks) "
            f"for {timeout} s"
        )

    def _enqueue(self, task: NewTask, handle: DurableHandle) -> DurableHandle:
        ticket = self.store.enqueue_nowait([task])
        handle._ticket = ticket
        self._outstanding += 1
        self._handles[task.id] = handle
        self._watch_wake.set()
        if task.idempotency_key is not None:
            self._by_key[task.idempotency_key] = handle
        ticket.add_done_callback(lambda t: self._enqueued(t, task, handle))
        return handle

    def _enqueued(self, ticket: EnqueueTicket, task: NewTask, handle: DurableHandle) -> None:
        """On the loop, once the row's commit resolved: settle duplicates and failures."""
        try:
            (outcome,) = ticket.result()
        except Exception as exc:
            if isinstance(exc, StoreError):
                self._unpersisted.append(f"task {task.name!r} (id {task.id}) was never stored")
            self._forget(task.id, task.idempotency_key)
            handle._set_exception(exc)
            return
        if outcome.created:
            handle._ticket = None  # persisted: keep no write (nor its rows) alive per task
            self._wake.set()
            return
        self._adopt(handle, task, outcome)

    def _adopt(self, handle: DurableHandle, task: NewTask, outcome: Enqueued) -> None:
        """The key already existed in the store: this handle now stands for that task."""
        self._forget(task.id, None)
        handle.id = outcome.id
        record = outcome.record
        if outcome.state == "done":
            self._forget(outcome.id, task.idempotency_key)
            result = None if record is None or record.result is None else record.result
            handle._set_result(None if result is None else json.loads(result))
        elif outcome.state == "dead":
            self._forget(outcome.id, task.idempotency_key)
            handle._set_exception(_dead_error(record, outcome.id, task.name))
        else:
            current = self._handles.get(outcome.id)
            if current is None:  # stored by an earlier run (and counted at open)
                self._handles[outcome.id] = handle
            elif current is not handle:
                current.add_done_callback(lambda done: _mirror(done, handle))
            self._wake.set()

    def _forget(self, task_id: str, key: str | None) -> None:
        if self._handles.pop(task_id, None) is not None:
            self._outstanding = max(0, self._outstanding - 1)
            self._room.set()
        if key is not None:
            self._by_key.pop(key, None)

    # -- feeding the workers -------------------------------------------------------------
    async def _feed_until_error(self) -> None:
        while True:
            self._wake = anyio.Event()
            free = self._slots - self._in_flight
            if free > 0:
                claimed = await self.store.claim(self.queue, limit=free, now=self.clock())
                for record in claimed:
                    self._start(record)
                if len(claimed) == free:
                    continue  # more may be due; come back when a worker frees up
            wait = _IDLE_POLL
            if free > 0:
                due = await self.store.next_due(self.queue)
                now = self.clock()
                if self._draining and self._in_flight == 0 and (due is None or due > now):
                    self._drained.set()
                    return
                if due is not None:
                    wait = min(wait, max(0.0, due - now))
                    if wait == 0:
                        continue
            with anyio.move_on_after(wait):
                await self._idle(wait, store_too=free > 0 and not self._draining)

    async def _idle(self, wait: float, *, store_too: bool) -> None:
        """Sleep until woken; a store shared by processes (Redis) may end it on new rows."""
        if not store_too or not isinstance(self.store, WaitsForWork):
            await self._wake.wait()
            return
        store = self.store
        async with anyio.create_task_group() as tg:

            async def until_rows() -> None:
                await store.wait_for_work(self.queue, timeout=wait)
                tg.cancel_scope.cancel()

            tg.start_soon(until_rows)
            await self._wake.wait()
            tg.cancel_scope.cancel()

    def wake(self) -> None:
        """Look at the store now (a retry became due, another process added rows)."""
        self._wake.set()

    # -- cancel by id ----------------------------------------------------------------------
    async def cancel(self, task_id: str) -> TaskState | None:
        """Cancel a stored task by id (see :meth:`corral.TaskQueue.cancel`)."""
        if not self._opened:
            raise QueueClosed(f"durable queue {self.queue!r} is not open")
        state = await self.store.cancel(task_id, now=self.clock())
        if state == "pending":
            self._cancelled_pending(task_id)
        elif state == "running":
            self._cancel_attempt(task_id)
        return state

    def _cancel_attempt(self, task_id: str) -> None:
        """Cancel the attempt running here (or about to start) at its next checkpoint."""
        self._cancel_requested.add(task_id)
        scope = self._scopes.get(task_id)
        if scope is not None:
            scope.cancel()

    def _cancelled_pending(self, task_id: str) -> None:
        """A task of this queue was cancelled before it ran: resolve its handle here."""
        handle = self._handles.get(task_id)
        if handle is None or task_id in self._scopes:
            return
        key = next((k for k, h in self._by_key.items() if h is handle), None)
        self._forget(task_id, key)
        if self._count_cancelled is not None:
            self._count_cancelled(handle.name)
        handle._set_exception(
            TaskCancelled(f"task {handle.name!r} (id {task_id}) was cancelled before it ran")
        )

    async def _watch_cancels(self, store: WatchesCancels) -> None:
        """Learn of cancels made by other processes (``corral tasks cancel``, a fleet peer):
        running attempts here are cancelled, handles of cancelled pending tasks resolve."""
        while True:
            if not self._scopes and not self._handles:
                self._watch_wake = anyio.Event()
                await self._watch_wake.wait()
                continue
            try:
                ids = await store.cancel_requests(self.queue, self._scopes.keys())
            except StoreError:
                _log.exception("durable queue %r: reading cancel requests failed", self.queue)
                await anyio.sleep(_IDLE_POLL)
                continue
            for task_id in ids:
                if task_id in self._scopes:
                    self._cancel_attempt(task_id)
                else:
                    self._cancelled_pending(task_id)

    async def _cancelled_running(
        self, record: TaskRecord, handle: DurableHandle, why: str
    ) -> AttemptCancelled:
        """The attempt ended because of its cancel: store it, resolve the handle."""
        await self._shielded(
            self.store.record_cancelled(record.id, error=why, now=self.clock()),
            record,
            "cancellation",
        )
        return self._finish_cancelled(record, handle, why)

    def _finish_cancelled(
        self, record: TaskRecord, handle: DurableHandle, why: str
    ) -> AttemptCancelled:
        message = f"task {record.name!r} (id {record.id}) {why}"
        self._finish(record, handle, exc=TaskCancelled(message))
        return AttemptCancelled(message)

    def _start(self, record: TaskRecord) -> None:
        self._in_flight += 1
        self._watch_wake.set()
        handle = self._handles.get(record.id)
        if handle is None:  # replayed from an earlier run, or added by another process
            handle = DurableHandle(record.name, record.id)
            self._handles[record.id] = handle
        if record.idempotency_key is not None:
            self._by_key.setdefault(record.idempotency_key, handle)
        info = TaskInfo(self.queue, record.name, handle, (), {}, record.key)
        info.attempt = record.attempts
        if self._stamps:  # traced: the attempt links to the context stored at submit
            try:
                info.headers = record.headers
            except StoreCorrupt:
                info.headers = {}  # the attempt itself reports the damaged payload
        try:
            self._dispatch(lambda: self._execute(record, handle, info), record.name, info)
        except Exception:
            # The queue refused (closing): the row stays 'running' and recover() re-queues
            # it on the next start.
            self._in_flight -= 1
            _log.warning("durable queue %r: could not start task %s", self.queue, record.id)

    async def _execute(self, record: TaskRecord, handle: DurableHandle, info: TaskInfo) -> None:
        """Run one claimed attempt and persist its outcome; re-raises a final failure.

        The queue's middleware wraps the task call inside this attempt: whatever it does
        (time it, log it, call it twice), the store sees exactly one attempt and one
        outcome, and ``_in_flight`` drops exactly once.
        """
        try:
            spec = lookup(record.name)
            error = None
            if spec is None:
                error = (
                    f"no task registered under the name {record.name!r} in this process "
                    "(import the module that defines it, then `corral tasks retry`)"
                )
            elif record.attempts > record.max_attempts:
                error = f"attempt budget exhausted ({record.max_attempts} starts)"
            if spec is None or error is not None:
                if await self._dead(record, handle, error or "", "") == "cancelled":
                    raise self._finish_cancelled(record, handle, "was cancelled by id")
                return
            args, kwargs = record.args, record.kwargs
            info.args, info.kwargs = tuple(args), kwargs
            fn = spec.fn

            def attempt() -> Awaitable[Any]:
                call: Awaitable[Any] = fn(*args, **kwargs)
                return call

            if self._middleware:
                middleware = self._middleware

                def attempt() -> Awaitable[Any]:
                    return run_chain(middleware, info, lambda: fn(*args, **kwargs))

            # One cancel scope per durable attempt (a durable task costs a commit anyway),
            # so that a cancel by id stops exactly this attempt at its next checkpoint.
            scope = self._scopes[record.id] = anyio.CancelScope()
            if record.id in self._cancel_requested:
                scope.cancel()  # asked between the claim and the start
            try:
                with scope:
                    if spec.timeout is None:
                        value = await attempt()
                    else:
                        with anyio.fail_after(spec.timeout):
                            value = await attempt()
            except Exception as exc:
                if record.id in self._cancel_requested:  # it failed on its way out
                    raise await self._cancelled_running(
                        record, handle, f"was cancelled by id while running ({exc!r})"
                    ) from exc
                await self._failed(record, handle, spec.retry or self.retry, exc)
                return  # pragma: no cover - _failed always raises
            except BaseException:
                # Shutdown cancelled the attempt: the row goes back to pending (the start
                # stays counted) instead of waiting for recover() after a restart.
                await self._shielded(
                    self.store.retry_later(
                        record.id,
                        not_before=self.clock(),
                        error="cancelled while running (queue shutdown)",
                        traceback="",
                        now=self.clock(),
                    ),
                    record,
                    "cancellation",
                )
                raise
            if scope.cancelled_caught:
                raise await self._cancelled_running(
                    record, handle, "was cancelled by id while running"
                )
            await self._shielded(
                self.store.complete(record.id, result=_json_or_none(value), now=self.clock()),
                record,
                "success",
            )
            self._finish(record, handle, value=value)
        finally:
            self._scopes.pop(record.id, None)  # kept until here: the handle is resolved
            self._cancel_requested.discard(record.id)
            self._in_flight -= 1
            self._wake.set()

    async def _failed(  # -> NoReturn: RetryScheduled or the final error
        self, record: TaskRecord, handle: DurableHandle, policy: Retry, exc: Exception
    ) -> None:
        text = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        now = self.clock()
        if policy.should_retry(exc, record.attempts, record.max_attempts):
            not_before = now + policy.delay(record.attempts, self._rng)
            state = await self._shielded(
                self.store.retry_later(
                    record.id, not_before=not_before, error=text, traceback=tb, now=now
                ),
                record,
                "failure (retry)",
            )
            if state == "cancelled":  # cancelled by id meanwhile: never retried
                raise self._finish_cancelled(
                    record, handle, f"was cancelled by id (its last attempt failed: {text})"
                ) from exc
            self.retries[record.name] = self.retries.get(record.name, 0) + 1
            raise RetryScheduled(record.id, record.name, record.attempts) from exc
        if await self._dead(record, handle, text, tb, cause=exc) == "cancelled":
            raise self._finish_cancelled(
                record, handle, f"was cancelled by id (its last attempt failed: {text})"
            ) from exc
        raise exc

    async def _dead(
        self,
        record: TaskRecord,
        handle: DurableHandle,
        error: str,
        tb: str,
        cause: BaseException | None = None,
    ) -> TaskState | None:
        state = await self._shielded(
            self.store.dead_letter(record.id, error=error, traceback=tb, now=self.clock()),
            record,
            "final failure",
        )
        if state == "cancelled":
            return state  # the caller resolves the handle as cancelled
        dead = TaskDeadLettered(record.id, record.name, record.attempts, error)
        dead.__cause__ = cause
        self._finish(record, handle, exc=dead)
        return state

    async def _shielded(self, write: Awaitable[T], record: TaskRecord, outcome: str) -> T | None:
        # A shutdown must not tear the outcome write away from a task that already ran.
        # If the write fails the row keeps its last state and runs again after a restart
        # (at least once), so the failure is logged rather than lost in the worker.
        with anyio.CancelScope(shield=True):
            try:
                return await write
            except StoreError:
                _log.exception("durable queue %r: recording a task outcome failed", self.queue)
                self._unpersisted.append(
                    f"the {outcome} of task {record.name!r} (id {record.id}; it will run again)"
                )
        return None

    def _finish(
        self,
        record: TaskRecord,
        handle: DurableHandle,
        *,
        value: Any = None,
        exc: BaseException | None = None,
    ) -> None:
        self._forget(record.id, record.idempotency_key)
        if exc is None:
            handle._set_result(value)
        else:
            handle._set_exception(exc)


def _mirror(source: TaskHandle[Any], target: TaskHandle[Any]) -> None:
    exc = source.exception()
    if exc is None:
        target._set_result(source.result())
    else:
        target._set_exception(exc)


def _dead_error(record: TaskRecord | None, task_id: str, name: str) -> TaskDeadLettered:
    if record is None:
        return TaskDeadLettered(task_id, name, 0, None)
    return TaskDeadLettered(task_id, record.name, record.attempts, record.last_error)


def durable_runner(
    queue: Any, idempotency_key: str | None, priority: int | None = None
) -> DurableRunner:
    """The durable runner of ``queue`` for one submit, or a TypeError explaining why not."""
    runner: DurableRunner | None = queue._durable
    if runner is None and priority is not None:
        raise TypeError(
            f"TaskQueue {queue.name!r}: priority= needs a durable queue "
            "(store=corral.SQLiteStore(path)); an in-memory queue starts tasks in submission "
            "order: give urgent work a queue of its own"
        )
    if runner is None:
        raise TypeError(
            f"TaskQueue {queue.name!r}: idempotency_key= needs a durable queue; open it with "
            "store=corral.SQLiteStore(path)"
        )
    return runner
