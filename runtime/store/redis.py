"""RedisStore: durable tasks shared by a fleet of worker processes through Redis Streams.

Same contract as :class:`~corral.store.SQLiteStore`, with Redis as the engine:

- submit: one Lua script per task (hash + ``XADD``, idempotency key with ``SET NX``),
  group-committed in a pipeline; acknowledged only after Redis replied, which with
  ``appendonly yes`` + ``appendfsync always`` means after the AOF fsync. Optionally
  ``wait_replicas=`` adds a ``WAIT`` per batch.
- claim: ``XREADGROUP`` under this process's consumer name, plus ``XAUTOCLAIM`` of
  entries whose consumer stopped renewing its lease for ``visibility_timeout`` seconds
  (killed, partitioned). The attempt is counted in the same script, before the task runs.
- a running task's lease is renewed (``XCLAIM ... JUSTID``) every third of the
  visibility timeout, so slow tasks are not stolen from live workers.
- success: ``XACK`` + ``XDEL``; retry: the task waits in a sorted set keyed by
  ``not_before`` and is moved back to the stream by the next claim once due (in the
  claim's script, atomically); final failure: the dead-letter stream ``<stream>:dead``.
- idle workers block in ``XREAD ... BLOCK`` (``wait_for_work``), never busy-poll.

The redis-py client is synchronous; every call runs on a worker thread through
``anyio.to_thread.run_sync`` under the store's own ``CapacityLimiter``, so the store
works on asyncio and trio alike.

Delivery is at least once: a task runs again when its worker dies (or loses Redis)
after the task's side effects and before its completion reached Redis.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from ._pending import LoopCaller, loop_caller, post
from ._redis_scripts import SCRIPTS, sha1
from ._redis_url import redact_url
from ._redis_writer import PipelineWriter, ScriptCall, redis_error
from ._wakeup import Wakeup
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

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStore"]

T = TypeVar("T")

FORMAT = "corral-redis-1"
_INTERRUPTED = "process exited while the task was running (crash, kill or power loss)"
_RECLAIMED = "worker stopped renewing its lease (crash, kill or lost connection)"
_SHAS = {name: sha1(text) for name, text in SCRIPTS.items()}
_STATES = ("pending", "running", "done", "dead", "cancelled")
_CANCELLED_PENDING = "cancelled by id before it ran"
#: Shortest time a cancelled record is kept for inspection (keep_done may be 0).
_KEEP_CANCELLED_MIN = 3600.0


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "corral.RedisStore needs the redis client: pip install 'corral[redis]'"
        ) from None
    return redis


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _row(flat: Sequence[Any] | dict[str, Any]) -> dict[str, Any]:
    """HGETALL as returned to a script (a flat list) or by redis-py (a dict)."""
    if isinstance(flat, dict):
        return flat
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _record(flat: Sequence[Any] | dict[str, Any]) -> TaskRecord:
    """A task hash as a TaskRecord."""
    row = _row(flat)
    state = row.get("state", "pending")
    return TaskRecord(
        id=row["id"],
        queue=row["queue"],
        name=row["name"],
        payload=row["payload"],
        state=state if state in _STATES else "pending",
        attempts=int(row.get("attempts", 0)),
        max_attempts=int(row["max_attempts"]),
        not_before=float(row["not_before"]),
        created_at=float(row["created_at"]),
        updated_at=float(row.get("updated_at", row["created_at"])),
        idempotency_key=_opt(row.get("idempotency_key")),
        last_error=_opt(row.get("last_error")),
        last_traceback=_opt(row.get("last_traceback")),
        result=_opt(row.get("result")),
    )


def _parse_enqueue(reply: Any) -> list[Enqueued]:
    out: list[Enqueued] = []
    for item in reply:
        if int(item[1]) == 1:
            out.append(Enqueued(item[0], True, "pending"))
        else:
            record = _record(item[2])
            out.append(Enqueued(record.id, False, record.state, record))
    return out


def _as_int(reply: Any) -> int:
    return int(reply)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern (SCAN MATCH)."""
    return "".join("\\" + ch if ch in "\\*?[]^-" else ch for ch in text)


@dataclass(slots=True)
class _Waiting:
    """A blocked ``XREAD`` on the waiter connection, so cancellation can unblock it."""

    client_id: int | None = None
    cancelled: bool = False


class RedisStore:
    """A :class:`corral.store.Store` on Redis Streams, shared by many processes.

    ``RedisStore(url, stream="corral:emails")`` serves one queue per stream (the first
    queue that uses it; the name is recorded in ``<stream>:meta``). Every process that
    opens it joins the consumer group ``group`` under ``consumer`` (default
    ``<hostname>-<pid>``: a restarted process with the same name takes its unfinished
    tasks back at once; others are reclaimed after ``visibility_timeout`` seconds
    without a lease renewal). ``keep_done`` is how long a finished task with an
    idempotency key is remembered; a cancelled task is kept as long (at least an hour).
    A cancel of a task running on any process of the fleet reaches it through its lease
    renewal, within ``visibility_timeout / 3`` seconds. Writes that hit a lost connection
    are sent again for up to ``retry_for`` seconds before failing with :class:`StoreError`.
    ``wait_replicas`` (default 0) makes every acknowledged write wait until that many
    replicas have it (``WAIT``). ``registry`` receives ``corral_store_consumer_lag``.
    ``create=False`` (used by ``corral tasks --redis``) refuses to open a stream that
    does not exist yet instead of creating it.
    """

    def __init__(
        self,
        url: str,
        stream: str = "corral:tasks",
        *,
        group: str = "corral",
        consumer: str | None = None,
        visibility_timeout: float = 30.0,
        keep_done: float = 86_400.0,
        retry_for: float = 10.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        max_batch: int = 512,
        registry: CollectorRegistry | None = None,
        create: bool = True,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"RedisStore: url must look like redis://host:port/db (or rediss://, "
                f"unix://), got {redact_url(url)!r}"
            )
        for label, text in (("stream", stream), ("group", group), ("consumer", consumer)):
            if text is not None and (not isinstance(text, str) or not text.strip()):
                raise ValueError(f"RedisStore: {label} must be a non-empty string, got {text!r}")
        for label, number in (
            ("visibility_timeout", visibility_timeout),
            ("retry_for", retry_for),
            ("wait_timeout", wait_timeout),
        ):
            if not isinstance(number, (int, float)) or number <= 0:
                raise ValueError(f"RedisStore: {label} must be a number > 0, got {number!r}")
        if not isinstance(keep_done, (int, float)) or keep_done < 0:
            raise ValueError(f"RedisStore: keep_done must be a number >= 0, got {keep_done!r}")
        if not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ValueError(
                f"RedisStore: wait_replicas must be an int >= 0, got {wait_replicas!r}"
            )
        self.url = url
        self.where = redact_url(url)
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.visibility_timeout = float(visibility_timeout)
        self.keep_done = float(keep_done)
        self.retry_for = float(retry_for)
        self.wait_replicas = wait_replicas
        self.wait_timeout = float(wait_timeout)
        self.max_batch = max_batch
        self._registry = registry
        self.create = create
        self._client: redis.Redis | None = None
        self._waiter: redis.Redis | None = None
        self._wait_lock = threading.Lock()
        self._writer: PipelineWriter | None = None
        self._limiter: anyio.CapacityLimiter | None = None  # made on open (needs a loop)
        self._commits: dict[str, CommitHistogram] = {}
        self._leases: dict[str, str] = {}  # task id -> stream entry this process runs
        self._cursor = "0-0"
        self._next_reclaim = 0.0
        self._due_after_claim: tuple[float, float | None] = (-1.0, None)
        self._queue: str | None = None
        self._stored_queue: str | None = None
        #: cancel requests reach a running task through its lease renewal
        self.cancel_check_every = self.visibility_timeout / 3
        self._flagged: set[str] = set()  # ids the renewer saw flagged (writer thread adds)
        self._flag_lock = threading.Lock()
        self._cancel_wake = Wakeup()
        self._cancel_mark: float | None = None  # score of the last cancelled record reported
        self._call_soon: LoopCaller | None = None

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, stream={self.stream!r})"

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> RedisStore:
        if self._writer is not None:
            raise StoreError(f"{self!r} is already open; open a second RedisStore instead")
        self._limiter = anyio.CapacityLimiter(4)
        self._call_soon = loop_caller()[0]
        client, self._waiter = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        self._client = client
        self._writer = PipelineWriter(
            client,
            where=self.where,
            scripts=SCRIPTS,
            shas=_SHAS,
            max_batch=self.max_batch,
            retry_for=self.retry_for,
            wait_replicas=self.wait_replicas,
            wait_timeout=self.wait_timeout,
            commits=self._commits,
            chore=self._renew_leases,
            chore_every=self.visibility_timeout / 3,
        )
        self._writer.start()
        from ..metrics import collector_for

        collector_for(self._registry).add_source(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        from ..metrics import collector_for

        collector_for(self._registry).remove_source(self)
        client, waiter = self._client, self._waiter
        try:
            with anyio.CancelScope(shield=True):  # queued writes always reach Redis
                await writer.close()
        finally:
            self._client = self._waiter = None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._disconnect, client, waiter)

    def _connect(self) -> tuple[redis.Redis, redis.Redis]:
        """Connect, check the keys are ours (or absent), create the group; never overwrite."""
        redis = _import_redis()
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": 10.0,
            "socket_connect_timeout": 5.0,
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        }
        try:
            client = redis.Redis.from_url(self.url, **options)
        except ValueError as exc:
            raise ValueError(f"RedisStore: bad url {self.where!r}: {exc}") from None
        try:
            self._check_keys(client)
            client.script_load(SCRIPTS["claim"])
            waiter = redis.Redis.from_url(self.url, single_connection_client=True, **options)
        except redis.exceptions.RedisError as exc:
            client.close()
            if isinstance(exc, redis.exceptions.ConnectionError):
                raise StoreError(f"cannot reach Redis at {self.where}: {exc}") from exc
            raise redis_error(exc, self.where) from exc
        except BaseException:
            client.close()
            raise
        return client, waiter

    def _check_keys(self, client: redis.Redis) -> None:
        redis = _import_redis()
        meta_key = f"{self.stream}:meta"
        pipe = client.pipeline(transaction=False)
        for key in (self.stream, f"{self.stream}:dead", meta_key):
            pipe.type(key)
        pipe.hgetall(meta_key)
        stream_type, dead_type, meta_type, meta = pipe.execute()
        if meta_type not in ("hash", "none") or (
            meta_type == "hash" and meta.get("format") != FORMAT
        ):
            found = meta.get("format") if isinstance(meta, dict) else meta_type
            raise StoreCorrupt(
                f"Redis at {self.where}: key {meta_key!r} is not a corral task stream marker "
                f"(found {found!r}, expected {FORMAT!r}); refusing to use stream {self.stream!r}"
            )
        for key, kind in ((self.stream, stream_type), (f"{self.stream}:dead", dead_type)):
            if kind not in ("stream", "none"):
                raise StoreCorrupt(
                    f"Redis at {self.where}: key {key!r} holds a {kind}, not a stream; "
                    "pick another stream name"
                )
        if meta_type == "none" and not self.create:
            raise StoreError(f"Redis at {self.where} holds no corral task stream {self.stream!r}")
        if meta_type == "none" and stream_type == "stream":
            raise StoreCorrupt(
                f"Redis at {self.where}: stream {self.stream!r} exists but corral did not "
                "create it (no marker); refusing to consume someone else's stream"
            )
        client.hsetnx(meta_key, "format", FORMAT)
        if self.create:
            keep = max(self.keep_done, _KEEP_CANCELLED_MIN)
            client.hset(meta_key, "keep_cancelled", repr(keep))
        try:
            client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _disconnect(self, client: redis.Redis | None, waiter: redis.Redis | None) -> None:
        redis = _import_redis()
        if client is not None:
            try:  # leave the group tidy: forget this consumer if it holds nothing
                pending = client.xpending_range(
                    self.stream, self.group, "-", "+", 1, consumername=self.consumer
                )
                if not pending:
                    client.xgroup_delconsumer(self.stream, self.group, self.consumer)
            except redis.exceptions.RedisError:
                pass
            client.close()
        if waiter is not None:
            with self._wait_lock:
                waiter.close()

    # -- plumbing ----------------------------------------------------------------------
    def _require(self) -> redis.Redis:
        if self._client is None:
            raise StoreError(f"{self!r} is not open: use 'async with store:' first")
        return self._client

    def _bind(self, queue: str) -> None:
        if self._queue is None:
            self._queue = queue
        elif queue != self._queue:
            raise StoreError(
                f"{self!r} already serves queue {self._queue!r}; give queue {queue!r} its own "
                "stream (RedisStore(url, stream=...))"
            )

    def _call(
        self, script: str, args: Sequence[str | int | float], parse: Callable[[Any], T]
    ) -> ScriptCall[T]:
        if self._writer is None:
            raise StoreError(f"{self!r} is not open: use 'async with store:' first")
        return self._writer.submit(
            ScriptCall(script, [self.stream, self.group, *args], parse, self._queue)
        )

    async def _sync(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(client)`` on a worker thread; redis errors become StoreError."""
        client = self._require()
        redis = _import_redis()

        def run() -> T:
            try:
                return fn(client)
            except redis.exceptions.NoScriptError:
                for text in SCRIPTS.values():
                    client.script_load(text)
                return fn(client)

        try:
            return await anyio.to_thread.run_sync(run, limiter=self._limiter)
        except redis.exceptions.RedisError as exc:
            raise redis_error(exc, self.where) from exc

    def _script(self, client: redis.Redis, name: str, *args: str | int | float) -> Any:
        return client.evalsha(_SHAS[name], 0, self.stream, self.group, *args)

    # -- the durable queue's path ------------------------------------------------------
    def enqueue_nowait(self, tasks: Sequence[NewTask]) -> ScriptCall[list[Enqueued]]:
        tasks = list(tasks)
        args: list[str | int | float] = [repr(time.time()), len(tasks)]
        for task in tasks:
            self._bind(task.queue)
            args += [
                task.id,
                task.queue,
                task.name,
                task.payload,
                task.max_attempts,
                repr(task.not_before),
                task.idempotency_key or "",
                repr(task.created_at),
            ]
            if task.idempotency_key == "":
                raise ValueError("idempotency_key must not be empty")
        return self._call("enqueue", args, _parse_enqueue)

    def enqueue(self, tasks: Sequence[NewTask]) -> ScriptCall[list[Enqueued]]:
        return self.enqueue_nowait(tasks)

    async def claim(self, queue: str, *, limit: int, now: float) -> list[TaskRecord]:
        """One script: promote due retries, reclaim expired leases (at most every
        quarter of the visibility timeout), read new entries, count the attempts.

        It goes through the writer's pipeline, so claims share round trips with the
        completions of the tasks that freed the workers."""
        self._bind(queue)
        reclaim_ms = 0
        if time.monotonic() >= self._next_reclaim:
            self._next_reclaim = time.monotonic() + min(1.0, self.visibility_timeout / 4)
            reclaim_ms = max(1, int(self.visibility_timeout * 1000))
        args: list[str | int | float] = [
            repr(now),
            self.consumer,
            limit,
            reclaim_ms,
            self._cursor,
            _RECLAIMED,
        ]
        cursor, claimed, _dead, backlog, first_retry = await self._call("claim", args, list)
        self._cursor = cursor
        # What next_due would ask right after this claim, known already.
        due = 0.0 if int(backlog) > 0 else float(first_retry) if first_retry else None
        self._due_after_claim = (time.monotonic(), due)
        rows = [_row(flat) for flat in claimed]
        for row in rows:
            self._leases[row["id"]] = row["entry"]
        return [_record(row) for row in rows]

    async def complete(self, task_id: str, *, result: str | None, now: float) -> None:
        self._leases.pop(task_id, None)
        await self._call(
            "complete",
            [repr(now), task_id, result or "", 0 if result is None else 1, repr(self.keep_done)],
            _as_int,
        )

    async def retry_later(
        self, task_id: str, *, not_before: float, error: str, traceback: str, now: float
    ) -> TaskState:
        self._leases.pop(task_id, None)
        args = [repr(now), task_id, repr(not_before), error, traceback]
        return "cancelled" if await self._call("retry", args, _as_int) == 2 else "pending"

    async def dead_letter(
        self, task_id: str, *, error: str, traceback: str, now: float
    ) -> TaskState:
        self._leases.pop(task_id, None)
        args = [repr(now), task_id, error, traceback]
        return "cancelled" if await self._call("dead", args, _as_int) == 2 else "dead"

    # -- cancel by id --------------------------------------------------------------------
    async def cancel(self, task_id: str, *, now: float | None = None) -> TaskState | None:
        when = time.time() if now is None else now
        state = await self._sync(
            lambda c: self._script(c, "cancel", repr(when), task_id, _CANCELLED_PENDING)
        )
        if state == "running" and task_id in self._leases:
            self._flag([task_id])  # running here: no need to wait for the renewal
        elif state == "pending":
            self._wake_cancels()
        return state if state in _STATES else None

    async def record_cancelled(self, task_id: str, *, error: str, now: float) -> None:
        self._leases.pop(task_id, None)
        await self._call("record_cancelled", [repr(now), task_id, error], _as_int)

    def _flag(self, ids: Iterable[str]) -> None:
        with self._flag_lock:
            self._flagged.update(ids)
        self._wake_cancels()

    async def cancel_requests(self, queue: str, running: Collection[str]) -> list[str]:
        """Wait until the lease renewal saw a cancel flag (at most ``cancel_check_every``),
        then return those ids and the tasks cancelled while pending since the last call."""
        await self._cancel_wake.wait(self.cancel_check_every)
        with self._flag_lock:
            flagged, self._flagged = self._flagged, set()
            # claimed here but not started yet: keep the flag for the next call
            self._flagged.update(i for i in flagged if i not in running and i in self._leases)
        ids = [task_id for task_id in flagged if task_id in running]
        mark = self._cancel_mark
        index = f"{self.stream}:cancelled"

        def op(client: redis.Redis) -> tuple[list[str], float | None]:
            if mark is None:
                top: Any = client.zrange(index, -1, -1, withscores=True)
                return [], float(top[0][1]) if top else 0.0
            found: Any = client.zrangebyscore(index, f"({mark!r}", "+inf", withscores=True)
            return [m for m, _ in found], float(found[-1][1]) if found else mark

        pending, self._cancel_mark = await self._sync(op)
        return ids + pending

    async def recover(self, queue: str, *, now: float) -> RecoveryReport:
        """Take back what an earlier process with this consumer name left unfinished.

        Tasks of *other* consumers are not touched here: they may be alive. The claim
        path reclaims them once their lease expired (``visibility_timeout``).
        """
        self._bind(queue)
        await self._sync(lambda c: c.hset(f"{self.stream}:meta", "queue", queue))
        requeued, dead = await self._sync(
            lambda c: self._script(c, "release", repr(now), self.consumer, _INTERRUPTED)
        )
        if self._cancel_mark is None:  # cancels of pending tasks are reported from here on
            top: Any = await self._sync(
                lambda c: c.zrange(f"{self.stream}:cancelled", -1, -1, withscores=True)
            )
            self._cancel_mark = float(top[0][1]) if top else 0.0
        return RecoveryReport(requeued=list(requeued), dead=list(dead))

    async def next_due(self, queue: str) -> float | None:
        """0.0 (long due) when the stream holds undelivered tasks, else the earliest
        retry time, else None. Right after a claim, the claim's own answer is used: a
        slightly stale answer costs nothing, as ``wait_for_work`` returns at once when
        undelivered entries exist."""
        seen_at, due = self._due_after_claim
        if time.monotonic() - seen_at < 0.05:
            return due

        def op(client: redis.Redis) -> float | None:
            pipe = client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xpending(self.stream, self.group)
            pipe.zrange(f"{self.stream}:retry", 0, 0, withscores=True)
            length, pending, first = pipe.execute()
            if length > int(pending["pending"]):
                return 0.0
            return float(first[0][1]) if first else None

        return await self._sync(op)

    async def wait_for_work(self, queue: str, *, timeout: float) -> None:
        """Block (``XREAD BLOCK``) until a task not yet delivered to the group is in the
        stream, or ``timeout`` seconds passed. Cancelling unblocks the read at once."""
        waiter = self._waiter
        if waiter is None:
            raise StoreError(f"{self!r} is not open: use 'async with store:' first")
        state = _Waiting()
        block_ms = max(1, int(timeout * 1000))
        redis = _import_redis()

        def wait() -> None:
            with self._wait_lock:
                if state.cancelled:
                    return
                state.client_id = int(waiter.client_id())
                groups = waiter.xinfo_groups(self.stream)
                last = next(
                    (g["last-delivered-id"] for g in groups if g["name"] == self.group), "0-0"
                )
                if not state.cancelled:
                    waiter.xread({self.stream: last}, count=1, block=block_ms)

        try:
            await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
        except redis.exceptions.RedisError as exc:
            raise redis_error(exc, self.where) from exc
        except anyio.get_cancelled_exc_class():
            state.cancelled = True
            client = self._client
            if state.client_id is not None and client is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(
                        self._unblock, client, state.client_id, limiter=self._limiter
                    )
            raise

    @staticmethod
    def _unblock(client: redis.Redis, client_id: int) -> None:
        redis = _import_redis()
        with contextlib.suppress(redis.exceptions.RedisError):  # read over, or Redis gone
            client.client_unblock(client_id)

    def _renew_leases(self) -> None:
        """On the writer thread: reset the idle time of the entries this process runs,
        so live workers keep their slow tasks (only dead ones lose them)."""
        client = self._client
        leases = [(i, e) for i, e in list(self._leases.items()) if e]
        if client is None or not leases:
            return
        pairs = [part for lease in leases for part in lease]
        _renewed, flagged = self._script(client, "renew", repr(time.time()), self.consumer, *pairs)
        if flagged:
            with self._flag_lock:
                self._flagged.update(flagged)
            if self._call_soon is not None:
                post(self._call_soon, self._wake_cancels)

    def _wake_cancels(self) -> None:
        """On the loop: a cancel flag was seen; ``cancel_requests`` returns now."""
        self._cancel_wake.set()

    # -- inspection and repair ---------------------------------------------------------
    def _fetch(self, client: redis.Redis, ids: Iterable[str]) -> list[TaskRecord]:
        ids = list(ids)
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(f"{self.stream}:t:{task_id}")
        return [_record(row) for row in pipe.execute() if row]

    async def get(self, task_id: str) -> TaskRecord | None:
        found = await self._sync(lambda c: self._fetch(c, [task_id]))
        return found[0] if found else None

    async def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        """A SCAN of this stream's task hashes (``corral tasks`` only: O(keys))."""
        head = f"{self.stream}:t:"
        pattern = _glob_escape(head + prefix) + "*"

        def op(client: redis.Redis) -> list[str]:
            found: set[str] = set()
            for key in client.scan_iter(match=pattern, count=1000):
                found.add(str(key)[len(head) :])
            return sorted(found)[:limit]

        return await self._sync(op)

    def _matches(self, queue: str | None) -> bool:
        return queue is None or queue == (self._queue or self._stored_queue)

    async def list_tasks(
        self, *, queue: str | None = None, state: TaskState | None = None, limit: int = 100
    ) -> list[TaskRecord]:
        if state == "dead":
            return await self.list_dead(queue=queue, limit=limit)
        await self._load_queue_name()
        if not self._matches(queue):
            return []
        index = f"{self.stream}:{state if state in ('done', 'cancelled') else 'live'}"

        def op(client: redis.Redis) -> list[TaskRecord]:
            out: list[TaskRecord] = []
            start, chunk = 0, max(limit, 100)
            while len(out) < limit:
                ids: list[str] = list(client.zrange(index, start, start + chunk - 1))  # type: ignore[arg-type]
                if not ids:
                    break
                start += chunk
                out += [r for r in self._fetch(client, ids) if state is None or r.state == state]
            return out[:limit]

        return await self._sync(op)

    async def list_dead(self, *, queue: str | None = None, limit: int = 100) -> list[TaskRecord]:
        await self._load_queue_name()
        if not self._matches(queue):
            return []

        def op(client: redis.Redis) -> list[TaskRecord]:
            entries: Any = client.xrange(f"{self.stream}:dead", "-", "+", count=limit)
            return self._fetch(client, [fields["id"] for _entry, fields in entries])

        return await self._sync(op)

    async def requeue_dead(
        self, task_ids: Sequence[str] | None, *, now: float, queue: str | None = None
    ) -> list[str]:
        await self._load_queue_name()
        if not self._matches(queue):
            return []
        ids = ["*"] if task_ids is None else list(task_ids)
        if not ids:
            return []
        moved = await self._sync(lambda c: self._script(c, "requeue_dead", repr(now), *ids))
        return list(moved)

    async def purge_dead(self, *, queue: str | None = None) -> int:
        await self._load_queue_name()
        if not self._matches(queue):
            return 0
        return int(await self._sync(lambda c: self._script(c, "purge_dead", repr(time.time()))))

    async def purge_done(self, *, older_than: float) -> int:
        return int(
            await self._sync(
                lambda c: self._script(c, "purge_done", repr(time.time()), repr(older_than))
            )
        )

    async def _load_queue_name(self) -> None:
        if self._queue is None and self._stored_queue is None:
            name = await self._sync(lambda c: c.hget(f"{self.stream}:meta", "queue"))
            self._stored_queue = str(name) if name else self.stream

    async def stats(self) -> list[QueueStats]:
        await self._load_queue_name()
        queue = self._queue or self._stored_queue or self.stream

        def op(client: redis.Redis) -> QueueStats:
            pipe = client.pipeline(transaction=False)
            pipe.zcard(f"{self.stream}:live")
            pipe.xpending(self.stream, self.group)
            pipe.xlen(f"{self.stream}:dead")
            pipe.zcount(f"{self.stream}:done", time.time() - self.keep_done, "+inf")
            pipe.zrange(f"{self.stream}:live", 0, 0, withscores=True)
            pipe.zcard(f"{self.stream}:cancelled")
            live, pel, dead, done, oldest, cancelled = pipe.execute()
            running = min(live, int(pel["pending"]))
            return QueueStats(
                queue=queue,
                pending=live - running,
                running=running,
                dead=dead,
                done=done,
                oldest_pending_at=float(oldest[0][1]) if oldest else None,
                cancelled=cancelled,
            )

        return [await self._sync(op)]

    # -- metrics -------------------------------------------------------------------------
    def _counts(self) -> tuple[int, int, int] | None:
        """(unfinished, dead, consumer lag) read on the calling (scrape) thread."""
        client = self._client
        if client is None:
            return None
        redis = _import_redis()
        try:
            pipe = client.pipeline(transaction=False)
            pipe.zcard(f"{self.stream}:live")
            pipe.xlen(f"{self.stream}:dead")
            pipe.xlen(self.stream)
            pipe.xpending(self.stream, self.group)
            live, dead, length, pel = pipe.execute()
        except redis.exceptions.RedisError:
            return None
        return int(live), int(dead), max(0, int(length) - int(pel["pending"]))

    def metrics_snapshot(self) -> StoreMetrics:
        """Gauges read from Redis on the scraping thread; never touches the event loop."""
        queue = self._queue or self.stream
        commits = {
            q: CommitHistogram(counts=list(h.counts), total=h.total, count=h.count)
            for q, h in list(self._commits.items())
        }
        counts = self._counts()
        if counts is None:
            return StoreMetrics({}, {}, commits)
        return StoreMetrics({queue: counts[0]}, {queue: counts[1]}, commits)

    def metric_families(self) -> Iterable[Metric]:
        """``corral_store_consumer_lag{queue}``: due tasks not yet delivered to any worker."""
        counts = self._counts()
        if counts is None:
            return
        lag = GaugeMetricFamily(
            "corral_store_consumer_lag",
            "Tasks in the Redis stream not yet delivered to any worker",
            labels=["queue"],
        )
        lag.add_metric([self._queue or self.stream], counts[2])
        yield lag
