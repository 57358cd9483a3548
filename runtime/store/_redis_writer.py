"""Group commit for Redis: the script calls that queue up while one pipeline is in flight
share the next pipeline, so a hundred concurrent submits cost one round trip (and, with
``appendfsync always``, one fsync) instead of a hundred.

One thread owned by the store sends the pipelines with the blocking redis-py client and
publishes outcomes on the event loop (asyncio or trio) once Redis replied, so the loop
never waits on a socket and any task may close the store. Every script the writer runs
is idempotent (an enqueue is keyed by the task id, transitions check the task's state),
which makes re-sending a batch after a lost connection safe: the writer retries for
``retry_for`` seconds (Redis restarting, loading its AOF) before failing the batch with
a clear :class:`~corral.store.StoreError`. Nothing is acknowledged that Redis did not
confirm. Between batches the thread also runs the store's periodic chore (renewing the
leases of running tasks).
"""

from __future__ import annotations

import contextlib
import functools
import queue as _queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._pending import LoopCaller, Outcome, Pending, join_writer, loop_caller, post, settle_all
from .base import CommitHistogram, StoreCorrupt, StoreError

if TYPE_CHECKING:
    import redis

__all__ = ["PipelineWriter", "ScriptCall", "redis_error"]

T = TypeVar("T")
Arg = str | int | float

_STOP: Any = object()


class ScriptCall(Pending[T]):
    """One script invocation waiting for the next pipeline; await it for the parsed reply."""

    __slots__ = ("args", "parse", "queue", "script")
    _unresolved = "Redis write not resolved yet"

    def __init__(
        self, script: str, args: Sequence[Arg], parse: Callable[[Any], T], queue: str | None
    ) -> None:
        super().__init__()
        self.script = script
        self.args = args
        self.parse = parse
        self.queue = queue


def redis_error(exc: BaseException, where: str) -> BaseException:
    """redis-py errors become StoreError (StoreCorrupt for a key of the wrong type)."""
    import redis.exceptions as rexc

    if not isinstance(exc, rexc.RedisError):
        return exc
    text = str(exc) or type(exc).__name__
    error: StoreError
    if isinstance(exc, rexc.ResponseError) and text.startswith("WRONGTYPE"):
        error = StoreCorrupt(
            f"Redis at {where}: a key of the task stream holds another type of data ({text}); "
            "pick another stream name or remove the key"
        )
    elif isinstance(exc, (rexc.ConnectionError, rexc.TimeoutError)):
        error = StoreError(f"Redis at {where} is unreachable: {text}")
    else:
        error = StoreError(f"Redis at {where} refused the write: {text}")
    error.__cause__ = exc
    return error


class PipelineWriter:
    """Owns the store's writes on one thread; ``start()`` on the loop, ``close()`` to end."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        where: str,
        scripts: dict[str, str],
        shas: dict[str, str],
        max_batch: int = 512,
        retry_for: float = 10.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        commits: dict[str, CommitHistogram] | None = None,
        chore: Callable[[], object] | None = None,
        chore_every: float = 10.0,
    ) -> None:
        self._client = client
        self._where = where
        self._scripts = scripts
        self._shas = shas
        self._max_batch = max_batch
        self._retry_for = retry_for
        self._wait_replicas = wait_replicas
        self._wait_timeout = wait_timeout
        self.commits: dict[str, CommitHistogram] = commits if commits is not None else {}
        self._chore = chore
        self._chore_every = chore_every
        self._inbox: _queue.SimpleQueue[Any] = _queue.SimpleQueue()
        self._closed = False
        self._call_soon: LoopCaller | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._call_soon = loop_caller()[0]
        self._thread = threading.Thread(
            target=self._run, name=f"corral-redis-writer:{self._where}", daemon=True
        )
        self._thread.start()

    def submit(self, call: ScriptCall[T]) -> ScriptCall[T]:
        if self._closed:
            raise StoreError(f"task store on Redis at {self._where} is closed")
        self._inbox.put(call)
        return call

    async def close(self) -> None:
        """Accept no more calls; return once everything queued is sent and published."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(_STOP)
        await join_writer(self._thread, self._call_soon)

    # -- on the writer thread ----------------------------------------------------------
    def _run(self) -> None:
        inbox = self._inbox
        stopping = False
        next_chore = time.monotonic() + self._chore_every
        while not stopping:
            try:
                first = inbox.get(timeout=max(0.0, next_chore - time.monotonic()))
            except _queue.Empty:
                first = None
            if first is _STOP:
                break
            if time.monotonic() >= next_chore:
                next_chore = time.monotonic() + self._chore_every
                if self._chore is not None:
                    with contextlib.suppress(Exception):  # Redis away: next round
                        self._chore()
            if first is None:
                continue
            batch: list[ScriptCall[Any]] = [first]
            while len(batch) < self._max_batch:
                try:
                    call = inbox.get_nowait()
                except _queue.Empty:
                    break
                if call is _STOP:
                    stopping = True
                    break
                batch.append(call)
            outcomes = self._execute(batch)
            post(self._call_soon, functools.partial(settle_all, batch, outcomes))

    def _execute(self, batch: list[ScriptCall[Any]]) -> list[Outcome]:
        import redis.exceptions as rexc

        outcomes: dict[int, Outcome] = {}
        deadline = time.monotonic() + self._retry_for
        todo = list(range(len(batch)))
        pause = 0.05
        while todo:
            pipe = self._client.pipeline(transaction=False)
            for index in todo:
                call = batch[index]
                pipe.evalsha(self._shas[call.script], 0, *call.args)
            if self._wait_replicas:
                command: Any = pipe.execute_command  # untyped in redis-py
                command("WAIT", self._wait_replicas, int(self._wait_timeout * 1000))
            started = time.perf_counter()
            try:
                replies = pipe.execute(raise_on_error=False)
            except (rexc.ConnectionError, rexc.TimeoutError) as exc:
                if time.monotonic() + pause > deadline:
                    return self._fail(batch, exc, outcomes)
                time.sleep(pause)  # Redis restarting or loading its AOF: send again
                pause = min(pause * 2, 0.5)
                continue
            except rexc.RedisError as exc:
                return self._fail(batch, exc, outcomes)
            finally:
                pipe.reset()
            self._observe([batch[i] for i in todo], time.perf_counter() - started)
            if self._wait_replicas:
                acked = replies.pop()
                if not (isinstance(acked, int) and acked >= self._wait_replicas):
                    error = StoreError(
                        f"Redis at {self._where}: only {acked} of {self._wait_replicas} "
                        f"replicas confirmed the write within {self._wait_timeout} s; it is "
                        "on the primary and may be lost if the primary fails now"
                    )
                    return [(None, error)] * len(batch)
            again: list[int] = []
            for index, reply in zip(todo, replies, strict=True):
                call = batch[index]
                if isinstance(reply, rexc.NoScriptError):
                    again.append(index)  # a restarted Redis forgot the scripts
                elif isinstance(reply, Exception):
                    outcomes[index] = (None, redis_error(reply, self._where))
                else:
                    try:
                        outcomes[index] = (call.parse(reply), None)
                    except Exception as exc:  # pragma: no cover - a reply we cannot read
                        outcomes[index] = (
                            None,
                            StoreCorrupt(
                                f"Redis at {self._where}: unexpected reply to {call.script}: {exc}"
                            ),
                        )
            if again:
                try:
                    for name in {batch[i].script for i in again}:
                        self._client.script_load(self._scripts[name])
                except rexc.RedisError as exc:
                    return self._fail(batch, exc, outcomes)
            todo = again
        return [outcomes[i] for i in range(len(batch))]

    def _fail(
        self, batch: list[ScriptCall[Any]], exc: BaseException, done: dict[int, Outcome]
    ) -> list[Outcome]:
        error = redis_error(exc, self._where)
        return [done.get(i, (None, error)) for i in range(len(batch))]

    def _observe(self, batch: list[ScriptCall[Any]], elapsed: float) -> None:
        for queue in {call.queue for call in batch}:
            if queue is not None:
                hist = self.commits.get(queue)
                if hist is None:
                    hist = self.commits[queue] = CommitHistogram()
                hist.observe(elapsed)
