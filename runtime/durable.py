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

import inspect
import json
import math
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .errors import QueueClosed, QueueFull, TaskCancelled
from .handles import TaskHandle
from .registry import encode_payload, lookup, spec_for
from .retry import Retry
from .store.base import Enqueued, EnqueueTicket, NewTask, Store, TaskDeadLettered, TaskRecord

__all__ = ["DurableHandle", "DurableRunner"]

#: Runs ``job()`` on one of the queue's workers (must not block or raise QueueFull).
Dispatch = Callable[[Callable[[], Awaitable[None]], TaskRecord], object]

#: Longest the feeder sleeps without looking at the store (another process may add rows).
_IDLE_POLL = 1.0


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
    """Durable tasks are not cancelled through a handle: the row decides (``corral tasks``)."""
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
    ) -> None:
        if slots < 1:
            raise ValueError(f"durable queue {queue!r}: slots must be >= 1, got {slots}")
        self.queue = queue
        self.store = store
        self.retry = retry if retry is not None else Retry()
        self.clock = clock
        self._rng = rng or random.Random()
        self._dispatch = dispatch
        self._slots = slots
        self._capacity = capacity
        self._in_flight = 0
        self._outstanding = 0  # rows of this queue not finished (pending + running)
        self._handles: dict[str, DurableHandle] = {}
        self._by_key: dict[str, DurableHandle] = {}
        self._wake = anyio.Event()
        self._room = anyio.Event()
        self._tg: TaskGroup | None = None
        self._closing = False
        self.retries: dict[str, int] = {}  # task name -> retries scheduled (a counter)

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> DurableRunner:
        await self.store.__aenter__()
        try:
            await self.store.recover(self.queue, now=self.clock())
            stats = {s.queue: s for s in await self.store.stats()}
            mine = stats.get(self.queue)
            self._outstanding = 0 if mine is None else mine.pending + mine.running
        except BaseException as exc:
            await self.store.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._feed)
        self._tg = tg
        return self

    async def stop_feeding(self) -> None:
        """Claim nothing more; what is claimed already stays with the workers to finish."""
        self._closing = True
        self._room.set()
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop_feeding()
        finally:
            await self.store.__aexit__(exc_type, exc, tb)
            for handle in list(self._handles.values()):
                handle._set_exception(
                    TaskCancelled(
                        f"queue {self.queue!r} closed before task {handle.name!r} "
                        f"(id {handle.id}) finished; it stays stored and runs after a restart"
                    )
                )
            self._handles.clear()
            self._by_key.clear()

    # -- submitting --------------------------------------------------------------------
    def _prepare(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> tuple[NewTask, DurableHandle]:
        spec = spec_for(fn)
        payload = encode_payload(spec, args, kwargs)
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError(f"idempotency_key must be a str, got {type(idempotency_key).__name__}")
        policy = spec.retry or self.retry
        now = self.clock()
        task = NewTask(
            id=uuid.uuid4().hex,
            queue=self.queue,
            name=spec.name,
            payload=payload,
            max_attempts=policy.max_attempts,
            not_before=now,
            created_at=now,
            idempotency_key=idempotency_key,
        )
        return task, DurableHandle(spec.name, task.id)

    def _check_open(self) -> None:
        if self._closing or self._tg is None:
            raise QueueClosed(f"durable queue {self.queue!r} is not open")

    def submit_nowait(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> DurableHandle:
        """Accept a task without waiting for the disk: durable after ``handle.persisted()``."""
        task, handle = self._prepare(fn, args, kwargs, idempotency_key)
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
    ) -> DurableHandle:
        """Persist a task (committed and fsynced when this returns) and return its handle."""
        task, handle = self._prepare(fn, args, kwargs, idempotency_key)
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
        await handle.persisted()
        return handle

    async def _wait_for_room(self, timeout: float | None) -> None:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            while self._outstanding >= self._capacity and not self._closing:
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
        if task.idempotency_key is not None:
            self._by_key[task.idempotency_key] = handle
        ticket.add_done_callback(lambda t: self._enqueued(t, task, handle))
        return handle

    def _enqueued(self, ticket: EnqueueTicket, task: NewTask, handle: DurableHandle) -> None:
        """On the loop, once the row's commit resolved: settle duplicates and failures."""
        try:
            (outcome,) = ticket.result()
        except Exception as exc:
            self._forget(task.id, task.idempotency_key)
            handle._set_exception(exc)
            return
        if outcome.created:
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
            if current is None:
                self._handles[outcome.id] = handle
                self._outstanding += 1
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
    async def _feed(self) -> None:
        while True:
            self._wake = anyio.Event()
            free = self._slots - self._in_flight
            claimed: list[TaskRecord] = []
            if free > 0:
                claimed = await self.store.claim(self.queue, limit=free, now=self.clock())
                for record in claimed:
                    self._start(record)
                if len(claimed) == free:
                    continue  # more may be due; come back when a worker frees up
            wait = _IDLE_POLL
            if free > 0:
                due = await self.store.next_due(self.queue)
                if due is not None:
                    wait = min(wait, max(0.0, due - self.clock()))
            if wait > 0 or free <= 0:
                with anyio.move_on_after(wait if free > 0 else _IDLE_POLL):
                    await self._wake.wait()

    def wake(self) -> None:
        """Look at the store now (a retry became due, another process added rows)."""
        self._wake.set()

    def _start(self, record: TaskRecord) -> None:
        self._in_flight += 1
        handle = self._handles.get(record.id)
        if handle is None:  # replayed from an earlier run, or added by another process
            handle = DurableHandle(record.name, record.id)
            self._handles[record.id] = handle
        if record.idempotency_key is not None:
            self._by_key.setdefault(record.idempotency_key, handle)
        try:
            self._dispatch(lambda: self._execute(record, handle), record)
        except Exception:
            # The queue refused (closing): the row stays 'running' and recover() re-queues it.
            self._in_flight -= 1
            raise

    async def _execute(self, record: TaskRecord, handle: DurableHandle) -> None:
        """Run one claimed attempt and persist its outcome; re-raises a final failure."""
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
                await self._dead(record, handle, error or "", "")
                return
            try:
                value = spec.fn(*record.args, **record.kwargs)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                await self._failed(record, handle, spec.retry or self.retry, exc)
                return
            except BaseException:
                # Shutdown cancelled the attempt: the row goes back to pending (the start
                # stays counted) instead of waiting for recover() after a restart.
                await self._shielded(
                    self.store.retry_later(
                        record.id,
                        not_before=self.clock(),
                        error="interrupted by queue shutdown",
                        traceback="",
                        now=self.clock(),
                    )
                )
                raise
            await self._shielded(
                self.store.complete(record.id, result=_json_or_none(value), now=self.clock())
            )
            self._finish(record, handle, value=value)
        finally:
            self._in_flight -= 1
            self._wake.set()

    async def _failed(
        self, record: TaskRecord, handle: DurableHandle, policy: Retry, exc: Exception
    ) -> None:
        text = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        now = self.clock()
        if policy.should_retry(exc, record.attempts, record.max_attempts):
            not_before = now + policy.delay(record.attempts, self._rng)
            await self._shielded(
                self.store.retry_later(
                    record.id, not_before=not_before, error=text, traceback=tb, now=now
                )
            )
            self.retries[record.name] = self.retries.get(record.name, 0) + 1
            return
        await self._dead(record, handle, text, tb, cause=exc)
        raise exc

    async def _dead(
        self,
        record: TaskRecord,
        handle: DurableHandle,
        error: str,
        tb: str,
        cause: BaseException | None = None,
    ) -> None:
        await self._shielded(
            self.store.dead_letter(record.id, error=error, traceback=tb, now=self.clock())
        )
        dead = TaskDeadLettered(record.id, record.name, record.attempts, error)
        dead.__cause__ = cause
        self._finish(record, handle, exc=dead)

    async def _shielded(self, write: Awaitable[None]) -> None:
        # A shutdown must not tear the outcome write away from a task that already ran.
        with anyio.CancelScope(shield=True):
            await write

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
