"""The backend-neutral contract every durable task store implements.

The durable queue (``corral.durable``) only talks to this protocol, so the SQLite store
(single host, no broker) and a Redis Streams store (fleets of processes) are
interchangeable. The contract is deliberately about *state transitions*, not storage:

``enqueue`` -> pending --``claim``--> running --``complete``--> done (kept for idempotency)
                  ^  |                   |---``retry_later``--> pending (with not_before)
                  |  |                   |---``dead_letter``--> dead
                  +--|---``requeue_dead``-------------------------+
                     |                   |
                     +--``cancel``--> cancelled <--``record_cancelled``--+ (attempt ended)

``cancel`` moves a pending task (due, delayed or waiting for a retry) to ``cancelled`` at
once; on a running task it only sets a flag, which the process running it learns through
``cancel_requests`` (see :class:`WatchesCancels`) and answers by cancelling the attempt
and calling ``record_cancelled``. A flagged task whose attempt fails is cancelled, not
retried or dead-lettered (``retry_later``/``dead_letter`` return ``"cancelled"``); one
that completes first is done.

Every transition is durable when its awaitable returns. ``claim`` counts an attempt
*before* the task runs, so a task that kills its process every time still reaches the
dead-letter table after ``max_attempts`` starts instead of looping forever.

Payloads are JSON text produced by :mod:`corral.registry`; stores never see Python
objects, so nothing is ever pickled.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import CorralError

__all__ = [
    "COMMIT_BUCKETS",
    "CommitHistogram",
    "EnqueueTicket",
    "Enqueued",
    "NewTask",
    "QueueStats",
    "RecoveryReport",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreMetrics",
    "TaskDeadLettered",
    "TaskRecord",
    "TaskState",
    "WaitsForWork",
    "WatchesCancels",
]

TaskState = Literal["pending", "running", "done", "dead", "cancelled"]

#: Bucket bounds (seconds) of ``corral_store_commit_seconds``: an fsync is ~0.3 ms on SSD.
COMMIT_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class StoreError(CorralError):
    """The task store could not do what was asked (I/O error, disk full, read-only file)."""


class StoreCorrupt(StoreError):
    """The store's file is not a corral task database (corrupt, foreign or newer schema).

    The file is left untouched: corral never overwrites data it does not understand.
    """


class TaskDeadLettered(CorralError):
    """A durable task exhausted its attempts and now sits in the dead-letter table."""

    def __init__(self, task_id: str, name: str, attempts: int, error: str | None) -> None:
        super().__init__(
            f"task {name!r} (id {task_id}) moved to the dead-letter table after "
            f"{attempts} attempt(s); last error: {error or 'unknown'}"
        )
        self.task_id = task_id
        self.name = name
        self.attempts = attempts
        self.error = error


@dataclass(frozen=True, slots=True)
class NewTask:
    """A validated task ready to persist: registered name plus JSON payload text."""

    id: str
    queue: str
    name: str
    payload: str  # JSON: {"args": [...], "kwargs": {...}}
    max_attempts: int
    not_before: float
    created_at: float
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """Outcome of enqueuing one :class:`NewTask`.

    ``created`` is False when the idempotency key matched an existing task; ``id`` and
    ``state`` are then the existing task's, and ``record`` holds it so the caller can
    hand back a resolved handle for a finished or dead task.
    """

    id: str
    created: bool
    state: TaskState
    record: TaskRecord | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task as stored: what the CLI shows and what replay runs.

    Its repr leaves out the payload and the result: task arguments stay out of logs and
    error reports that print the record.
    """

    id: str
    queue: str
    name: str
    payload: str = field(repr=False)
    state: TaskState
    attempts: int
    max_attempts: int
    not_before: float
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    last_error: str | None = None
    last_traceback: str | None = None
    result: str | None = field(default=None, repr=False)  # JSON of a done task's return value

    @property
    def args(self) -> list[Any]:
        """The positional arguments; :class:`StoreCorrupt` if the stored payload is damaged."""
        return self.decoded()[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments; :class:`StoreCorrupt` if the stored payload is damaged."""
        return self.decoded()[1]

    @property
    def headers(self) -> dict[str, str]:
        """Propagation headers stored with the task at submit (e.g. ``traceparent``);
        empty when there are none or they are not a mapping of strings."""
        value = _loads(self.payload, f"task {self.id}: stored payload")
        found = value.get("headers") if isinstance(value, dict) else None
        if not isinstance(found, dict):
            return {}
        return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}

    def decoded(self) -> tuple[list[Any], dict[str, Any]]:
        """``(args, kwargs)`` from the payload, or StoreCorrupt saying what is wrong with it."""
        value = _loads(self.payload, f"task {self.id}: stored payload")
        args = value.get("args", []) if isinstance(value, dict) else None
        kwargs = value.get("kwargs", {}) if isinstance(value, dict) else None
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise StoreCorrupt(
                f"task {self.id}: stored payload is not an object with an 'args' list and a "
                f"'kwargs' object (starts {self.payload[:40]!r})"
            )
        return args, kwargs

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (payload and result decoded) for ``corral tasks --json``.

        A damaged payload or result does not hide the rest of the record: ``args``,
        ``kwargs`` (or ``result``) are then null, the stored text is under ``payload``
        (``result_text``) and ``damaged`` lists what could not be read.
        """
        damaged: list[str] = []
        out: dict[str, Any] = {"id": self.id, "queue": self.queue, "name": self.name}
        try:
            out["args"], out["kwargs"] = self.decoded()
        except StoreCorrupt as exc:
            out["args"] = out["kwargs"] = None
            out["payload"] = self.payload
            damaged.append(str(exc))
        out.update(
            state=self.state,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            not_before=self.not_before,
            created_at=self.created_at,
            updated_at=self.updated_at,
            idempotency_key=self.idempotency_key,
            last_error=self.last_error,
            last_traceback=self.last_traceback,
            result=None,
        )
        if self.result is not None:
            try:
                out["result"] = _loads(self.result, f"task {self.id}: stored result")
            except StoreCorrupt as exc:
                out["result_text"] = self.result
                damaged.append(str(exc))
        try:
            headers = self.headers
        except StoreCorrupt:
            headers = {}  # named under "damaged" already
        if headers:
            out["headers"] = headers
        if damaged:
            out["damaged"] = damaged
        return out


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise StoreCorrupt(f"{what} is not valid JSON ({reason})") from None


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``recover`` did with tasks left ``running`` by a process that died."""

    requeued: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    pending: int
    running: int
    dead: int
    done: int
    oldest_pending_at: float | None
    cancelled: int = 0


@dataclass(slots=True)
class CommitHistogram:
    """Commit latency buckets kept as plain ints (cheap to update, read at scrape time)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        index = 0
        for bound in COMMIT_BUCKETS:
            if seconds <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.total += seconds
        self.count += 1


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    """A scrape-time snapshot: gauges per queue and the commit histogram per queue."""

    pending: Mapping[str, int]
    dead: Mapping[str, int]
    commits: Mapping[str, CommitHistogram]


class EnqueueTicket(Protocol):
    """Returned by ``enqueue_nowait``: await it to learn when (and how) the rows were stored."""

    def __await__(self) -> Generator[Any, None, list[Enqueued]]: ...

    def done(self) -> bool: ...

    def result(self) -> list[Enqueued]:
        """The outcome once done; raises the store's error if the write failed."""
        ...

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        """Run ``callback(ticket)`` on the event loop once the write is resolved."""
        ...


@runtime_checkable
class Store(Protocol):
    """A durable home for tasks. Open it with ``async with store:``.

    All ``now``/``not_before`` values are wall-clock epoch seconds supplied by the
    caller, so restarts (and tests with a fake clock) see consistent times.
    """

    async def __aenter__(self) -> Store: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # -- the durable queue's path ------------------------------------------------------
    def enqueue_nowait(self, tasks: Sequence[NewTask]) -> EnqueueTicket:
        """Queue rows for the next group commit without waiting (for ``submit_nowait``).

        Awaiting the ticket returns once they are durable, one :class:`Enqueued` per task
        in order; a task whose idempotency key exists yields the existing task instead.
        """
        ...

    def enqueue(self, tasks: Sequence[NewTask]) -> Awaitable[list[Enqueued]]:
        """``await store.enqueue(tasks)``: durable (fsynced) when it returns."""
        ...

    async def claim(self, queue: str, *, limit: int, now: float) -> list[TaskRecord]:
        """Move up to ``limit`` due pending tasks to running, counting one attempt each.

        Durable before it returns, so the attempt is on disk before the task starts.
        """
        ...

    async def complete(self, task_id: str, *, result: str | None, now: float) -> None:
        """The task succeeded: drop it from the live set, keep a done record for idempotency."""
        ...

    async def retry_later(
        self, task_id: str, *, not_before: float, error: str, traceback: str, now: float
    ) -> TaskState:
        """The attempt failed and will be retried no earlier than ``not_before``.

        Returns ``"pending"``, or ``"cancelled"`` when a cancel was requested meanwhile
        (the task is then cancelled instead of retried)."""
        ...

    async def dead_letter(
        self, task_id: str, *, error: str, traceback: str, now: float
    ) -> TaskState:
        """The task failed for good: move it (args, attempts, error, traceback) to the DLQ.

        Returns ``"dead"``, or ``"cancelled"`` when a cancel was requested meanwhile."""
        ...

    async def cancel(self, task_id: str, *, now: float | None = None) -> TaskState | None:
        """Cancel a task by id; returns the state it was in when the request arrived.

        ``"pending"``: it is ``cancelled`` now and will never be claimed. ``"running"``:
        the request is stored; the process running it cancels the attempt at its next
        checkpoint. ``"done"``, ``"dead"``, ``"cancelled"``: finished, nothing changed.
        ``None``: no task has that id.
        """
        ...

    async def record_cancelled(self, task_id: str, *, error: str, now: float) -> None:
        """A running attempt ended because its task was cancelled: move it to cancelled."""
        ...

    async def recover(self, queue: str, *, now: float) -> RecoveryReport:
        """On start: tasks left running by a dead process go back to pending, or to the
        dead-letter table when that interrupted start was their last allowed attempt."""
        ...

    async def next_due(self, queue: str) -> float | None:
        """Earliest ``not_before`` among pending tasks of ``queue`` (None when none)."""
        ...

    # -- inspection and repair (``corral tasks``) --------------------------------------
    async def get(self, task_id: str) -> TaskRecord | None: ...

    async def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Ids of stored tasks (any state) that start with ``prefix``, at most ``limit``."""
        ...

    async def list_tasks(
        self, *, queue: str | None = None, state: TaskState | None = None, limit: int = 100
    ) -> list[TaskRecord]: ...

    async def list_dead(
        self, *, queue: str | None = None, limit: int = 100
    ) -> list[TaskRecord]: ...

    async def requeue_dead(
        self, task_ids: Sequence[str] | None, *, now: float, queue: str | None = None
    ) -> list[str]:
        """Move dead tasks (the given ids, or all when None) back to pending with a fresh
        attempt budget; returns the ids actually moved."""
        ...

    async def purge_dead(self, *, queue: str | None = None) -> int: ...

    async def purge_done(self, *, older_than: float) -> int:
        """Forget done records (and so their idempotency keys) finished before ``older_than``."""
        ...

    async def stats(self) -> list[QueueStats]: ...

    # -- metrics -------------------------------------------------------------------------
    def metrics_snapshot(self) -> StoreMetrics:
        """Called from the scrape thread; must not touch the event loop."""
        ...


@runtime_checkable
class WaitsForWork(Protocol):
    """Optional capability of a store shared by many processes (Redis).

    The durable runner calls it instead of sleeping when it has free workers and
    nothing to claim, so a task submitted by another process starts at once instead of
    at the next poll. It returns when unclaimed rows may exist or ``timeout`` seconds
    passed, and must return promptly when cancelled.
    """

    async def wait_for_work(self, queue: str, *, timeout: float) -> None: ...


@runtime_checkable
class WatchesCancels(Protocol):
    """Capability of a store whose tasks can be cancelled from another process.

    The durable runner calls it in a loop while it runs tasks or holds handles. It
    returns within the store's check interval (``cancel_check_every`` seconds; at once
    after a ``cancel`` through this store object) the ids among ``running`` whose
    cancellation was requested, plus the ids of tasks of ``queue`` that were cancelled
    while pending since the previous call (so their handles can resolve). ``running`` is
    the runner's live collection of attempts: read it after the wait, not before, so an
    attempt that started during the wait is not missed.
    """

    cancel_check_every: float

    async def cancel_requests(self, queue: str, running: Collection[str]) -> list[str]: ...
