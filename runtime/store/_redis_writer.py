"""Group commit for Redis: the script calls that queue up while one pipeline is in flight
share the next pipeline, so a hundred concurrent submits cost one round trip (and, with
``appendfsync always``, one fsync) instead of a hundred.

The writer is one coroutine in the store's task group; the blocking redis-py pipeline
runs on a worker thread (``anyio.to_thread`` with the store's ``CapacityLimiter``), so
the event loop never waits on a socket. Every script the writer runs is idempotent
(an enqueue is keyed by the task id, transitions check the task's state), which makes
re-sending a batch after a lost connection safe: the writer retries for ``retry_for``
seconds (Redis restarting, loading its AOF) before failing the batch with a clear
:class:`~corral.store.StoreError`. Nothing is acknowledged that Redis did not confirm.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .base import CommitHistogram, StoreCorrupt, StoreError

if TYPE_CHECKING:
    import redis

__all__ = ["PipelineWriter", "ScriptCall", "redis_error"]

T = TypeVar("T")
Arg = str | int | float

_UNSET: Any = object()


class ScriptCall(Generic[T]):
    """One script invocation waiting for the next pipeline; await it for the parsed reply."""

    __slots__ = ("_callbacks", "_error", "_event", "_result", "args", "parse", "queue", "script")

    def __init__(
        self, script: str, args: Sequence[Arg], parse: Callable[[Any], T], queue: str | None
    ) -> None:
        self.script = script
        self.args = args
        self.parse = parse
        self.queue = queue
        self._result: T = _UNSET
        self._error: BaseException | None = None
        self._event: anyio.Event | None = None
        self._callbacks: list[Callable[[ScriptCall[T]], object]] | None = None

    def done(self) -> bool:
        return self._result is not _UNSET or self._error is not None

    def add_done_callback(self, callback: Callable[[ScriptCall[T]], object]) -> None:
        """Call ``callback(call)`` on the event loop once Redis answered (or failed)."""
        if self.done():
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        if self._result is _UNSET:
            raise StoreError("Redis write not resolved yet")
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
    """Owns the store's writes; started by the store inside its task group."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        where: str,
        scripts: dict[str, str],
        shas: dict[str, str],
        limiter: anyio.CapacityLimiter,
        max_batch: int = 512,
        retry_for: float = 10.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        commits: dict[str, CommitHistogram] | None = None,
    ) -> None:
        self._client = client
        self._where = where
        self._scripts = scripts
        self._shas = shas
        self._limiter = limiter
        self._max_batch = max_batch
        self._retry_for = retry_for
        self._wait_replicas = wait_replicas
        self._wait_timeout = wait_timeout
        self.commits: dict[str, CommitHistogram] = commits if commits is not None else {}
        self._send: MemoryObjectSendStream[ScriptCall[Any]]
        self._receive: MemoryObjectReceiveStream[ScriptCall[Any]]
        self._send, self._receive = anyio.create_memory_object_stream[ScriptCall[Any]](math.inf)
        self._closed = False

    def submit(self, call: ScriptCall[T]) -> ScriptCall[T]:
        if self._closed:
            raise StoreError(f"task store on Redis at {self._where} is closed")
        self._send.send_nowait(call)
        return call

    def close(self) -> None:
        """Accept no more calls; ``run`` sends what is queued, then returns."""
        if not self._closed:
            self._closed = True
            self._send.close()

    async def run(self) -> None:
        try:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # Not cancellable on purpose: callers always learn what Redis did.
                await anyio.to_thread.run_sync(self._execute, batch, limiter=self._limiter)
                for call in batch:
                    call._resolve()
        finally:
            self.close()
            while True:
                try:
                    call = self._receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                call._error = StoreError(
                    f"task store on Redis at {self._where} closed before this write"
                )
                call._resolve()
            self._receive.close()

    # -- on the worker thread ----------------------------------------------------------
    def _execute(self, batch: list[ScriptCall[Any]]) -> None:
        import redis.exceptions as rexc

        deadline = time.monotonic() + self._retry_for
        todo = batch
        pause = 0.05
        while todo:
            pipe = self._client.pipeline(transaction=False)
            for call in todo:
                pipe.evalsha(self._shas[call.script], 0, *call.args)
            if self._wait_replicas:
                command: Any = pipe.execute_command  # untyped in redis-py
                command("WAIT", self._wait_replicas, int(self._wait_timeout * 1000))
            started = time.perf_counter()
            try:
                replies = pipe.execute(raise_on_error=False)
            except (rexc.ConnectionError, rexc.TimeoutError) as exc:
                if time.monotonic() + pause > deadline:
                    self._fail(todo, exc)
                    return
                time.sleep(pause)  # Redis restarting or loading its AOF: send again
                pause = min(pause * 2, 0.5)
                continue
            except rexc.RedisError as exc:
                self._fail(todo, exc)
                return
            finally:
                pipe.reset()
            self._observe(todo, time.perf_counter() - started)
            if self._wait_replicas and not self._replicated(todo, replies.pop()):
                return
            again: list[ScriptCall[Any]] = []
            for call, reply in zip(todo, replies, strict=True):
                if isinstance(reply, rexc.NoScriptError):
                    again.append(call)  # a restarted Redis forgot the scripts
                elif isinstance(reply, Exception):
                    call._error = redis_error(reply, self._where)
                else:
                    try:
                        call._result = call.parse(reply)
                    except Exception as exc:  # pragma: no cover - a reply we cannot read
                        call._error = StoreCorrupt(
                            f"Redis at {self._where}: unexpected reply to {call.script}: {exc}"
                        )
            if again:
                try:
                    for name in {call.script for call in again}:
                        self._client.script_load(self._scripts[name])
                except rexc.RedisError as exc:
                    self._fail(again, exc)
                    return
            todo = again

    def _replicated(self, batch: list[ScriptCall[Any]], acked: object) -> bool:
        if isinstance(acked, int) and acked >= self._wait_replicas:
            return True
        error = StoreError(
            f"Redis at {self._where}: only {acked} of {self._wait_replicas} replicas "
            f"confirmed the write within {self._wait_timeout} s; it is on the primary and may "
            "be lost if the primary fails now"
        )
        for call in batch:
            call._result = _UNSET
            call._error = error
        return False

    def _fail(self, batch: list[ScriptCall[Any]], exc: BaseException) -> None:
        error = redis_error(exc, self._where)
        for call in batch:
            call._result = _UNSET
            call._error = error

    def _observe(self, batch: list[ScriptCall[Any]], elapsed: float) -> None:
        seen: set[str | None] = set()
        for call in batch:
            queue = call.queue
            if queue is not None and queue not in seen:
                seen.add(queue)
                hist = self.commits.get(queue)
                if hist is None:
                    hist = self.commits[queue] = CommitHistogram()
                hist.observe(elapsed)
