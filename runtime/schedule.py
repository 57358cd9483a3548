"""Periodic tasks: ``@corral.periodic(...)`` declares them, :class:`Scheduler` fires them.

Fire times are a pure function of the schedule (cron parsed by ``cronsim``, or ``every=``
anchored at the Unix epoch), never of when a process started, so every process of a
fleet computes the same ticks. On a durable queue each fire is submitted with the
idempotency key ``corral.periodic:<name>:<tick>``: the store keeps one task per key, so
N processes produce one run per tick, and a restart that submits a tick again (catch-up)
finds the run it already made instead of making another.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from anyio.abc import TaskGroup

from .errors import QueueClosed, QueueFull

if TYPE_CHECKING:
    from .queue import TaskQueue

__all__ = ["CatchUp", "Overlap", "Periodic", "Scheduler", "periodic", "registered"]

Overlap = Literal["skip", "queue"]
CatchUp = Literal["latest", "all", "none"]
_log = logging.getLogger("corral.schedule")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CATCH_UP = 10_000  # ticks one catch-up may submit: a typo in lookback is not a flood


@dataclass(frozen=True)
class Periodic:
    """One periodic task: what runs, on which queue, and when."""

    name: str
    fn: Callable[..., Any]
    queue: str
    cron: str | None = None
    every: timedelta | None = None
    tz: tzinfo = UTC
    overlap: Overlap = "skip"
    catch_up: CatchUp = "latest"
    lookback: timedelta = timedelta(hours=1)
    pass_scheduled_time: bool = False

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise TypeError(f"corral.periodic {self.name!r}: give exactly one of cron or every=")
        if self.every is not None and (
            not isinstance(self.every, timedelta) or self.every <= timedelta(0)
        ):
            raise ValueError(
                f"corral.periodic {self.name!r}: every= must be a positive timedelta, "
                f"got {self.every!r}"
            )
        if self.cron is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, datetime.now(self.tz))
            except (CronSimError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"corral.periodic {self.name!r}: bad cron expression {self.cron!r}: {exc}"
                ) from None
        if self.overlap not in ("skip", "queue"):
            raise ValueError(
                f"corral.periodic {self.name!r}: overlap must be 'skip' or 'queue', "
                f"got {self.overlap!r}"
            )
        if self.catch_up not in ("latest", "all", "none"):
            raise ValueError(
                f"corral.periodic {self.name!r}: catch_up must be 'latest', 'all' or 'none', "
                f"got {self.catch_up!r}"
            )
        if self.catch_up == "all" and self.overlap == "skip":
            raise ValueError(
                f"corral.periodic {self.name!r}: catch_up='all' submits every missed tick at "
                "once, so runs overlap; say overlap='queue' (or catch_up='latest')"
            )
        if not isinstance(self.lookback, timedelta) or self.lookback < timedelta(0):
            raise ValueError(f"corral.periodic {self.name!r}: lookback must be a timedelta >= 0")

    def fires_after(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after`` (aware), in UTC, forever."""
        if self.every is not None:
            step = self.every.total_seconds()
            k = math.floor((after - _EPOCH).total_seconds() / step) + 1
            while True:
                when = _EPOCH + timedelta(seconds=k * step)
                if when > after:
                    yield when
                k += 1
        else:
            from cronsim import CronSim

            assert self.cron is not None
            for when in CronSim(self.cron, after.astimezone(self.tz)):
                yield when.astimezone(UTC)

    def fires_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Fire times in ``(start, end]``, at most ``_MAX_CATCH_UP`` of the latest ones."""
        found: list[datetime] = []
        for when in self.fires_after(start):
            if when > end:
                break
            found.append(when)
            if len(found) > _MAX_CATCH_UP:
                del found[0]
        return found

    def idempotency_key(self, when: datetime) -> str:
        return f"corral.periodic:{self.name}:{when.isoformat()}"


_registered: dict[str, Periodic] = {}


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"corral.periodic: unknown time zone {tz!r}") from None


def periodic(
    cron: str | None = None,
    *,
    every: timedelta | None = None,
    queue: str,
    name: str | None = None,
    tz: str | tzinfo = "UTC",
    overlap: Overlap = "skip",
    catch_up: CatchUp = "latest",
    lookback: timedelta = timedelta(hours=1),
    pass_scheduled_time: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a periodic task: ``@corral.periodic("*/5 * * * *", queue="reports")``.

    The function runs with no arguments (or with the tick's ISO-8601 UTC time when
    ``pass_scheduled_time=True``) on the queue named ``queue``, fired by a
    :class:`Scheduler` opened on that queue. See the README section "Periodic tasks".
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        task_name = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        spec = Periodic(
            name=task_name,
            fn=fn,
            queue=queue,
            cron=cron,
            every=every,
            tz=_zone(tz),
            overlap=overlap,
            catch_up=catch_up,
            lookback=lookback,
            pass_scheduled_time=pass_scheduled_time,
        )
        _registered[task_name] = spec
        return fn

    return decorate


def registered(queue: str | None = None) -> list[Periodic]:
    """The periodic tasks declared so far (for ``queue``, or all), sorted by name."""
    return sorted(
        (p for p in _registered.values() if queue is None or p.queue == queue),
        key=lambda p: p.name,
    )


class Scheduler:
    """Fires the periodic tasks of one queue while open.

    ``async with corral.Scheduler(q):`` inside the queue's block. Each tick submits one
    task with ``submit_nowait``; a full queue skips that tick (logged, counted in
    ``skipped``). ``overlap="skip"`` skips a tick while this process's previous run of
    the same task is unfinished. On start, a durable queue submits the ticks missed in
    the last ``lookback`` as ``catch_up`` says ("latest": the most recent one, "all":
    every one, "none": none); ticks that already ran are found by their idempotency key
    and not run again. An in-memory queue remembers nothing across restarts, so it
    starts with the next tick whatever ``catch_up`` says.
    """

    def __init__(
        self,
        queue: TaskQueue,
        *,
        tasks: Iterable[Periodic] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._queue = queue
        self._tasks = list(tasks) if tasks is not None else registered(queue.name)
        for p in self._tasks:
            if p.queue != queue.name:
                raise ValueError(
                    f"corral.Scheduler: periodic task {p.name!r} is declared for queue "
                    f"{p.queue!r}, not {queue.name!r}"
                )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._last: dict[str, Any] = {}
        self._next: dict[str, datetime] = {}
        self.fired: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self._group: TaskGroup | None = None

    @property
    def durable(self) -> bool:
        return getattr(self._queue, "_durable", None) is not None

    def next_fires(self) -> list[tuple[Periodic, datetime]]:
        """Each task with its next fire time (UTC), soonest first."""
        now = self._clock()
        rows = [(p, self._next.get(p.name) or next(p.fires_after(now))) for p in self._tasks]
        return sorted(rows, key=lambda row: row[1])

    async def __aenter__(self) -> Scheduler:
        if self.durable:
            from .registry import spec_for

            for p in self._tasks:
                spec_for(p.fn)  # TypeError naming the fix before anything is fired
        now = self._clock()
        if self.durable:
            for p in self._tasks:
                missed = p.fires_between(now - p.lookback, now)
                if p.catch_up == "latest":
                    missed = missed[-1:]
                elif p.catch_up == "none":
                    missed = []
                for when in missed:
                    await self._fire(p, when)
        for p in self._tasks:
            self._next[p.name] = next(p.fires_after(now))
        if self._tasks:
            self._group = anyio.create_task_group()
            await self._group.__aenter__()
            self._group.start_soon(self._run, name=f"corral.Scheduler[{self._queue.name}]")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._group is None:
            return None
        self._group.cancel_scope.cancel()
        group, self._group = self._group, None
        return await group.__aexit__(exc_type, exc, tb)

    async def _run(self) -> None:
        while True:
            p = min(self._tasks, key=lambda task: self._next[task.name])
            when = self._next[p.name]
            delay = (when - self._clock()).total_seconds()
            if delay > 0:
                # Sleep at most a minute at a time so a wall-clock jump is noticed.
                await anyio.sleep(min(delay, 60.0))
                continue
            await self._fire(p, when)
            self._next[p.name] = next(p.fires_after(max(when, self._clock())))

    async def _still_running(self, handle: Any) -> bool:
        """Whether the previous run is unfinished, wherever in the fleet it runs.

        On a durable queue another process may run the task, so this process's handle
        would never finish: ask the store instead (a finished task is gone or done).
        """
        if handle.done():
            return False
        durable = getattr(self._queue, "_durable", None)
        if durable is None:
            return True
        record = await durable.store.get(handle.id)
        return record is not None and record.state in ("pending", "running")

    async def _fire(self, p: Periodic, when: datetime) -> None:
        last = self._last.get(p.name)
        if p.overlap == "skip" and last is not None and await self._still_running(last):
            self._skip(p, when, "its previous run is still running")
            return
        args = (when.isoformat(),) if p.pass_scheduled_time else ()
        key = p.idempotency_key(when) if self.durable else None
        try:
            if key is None:
                handle = self._queue.submit_nowait(p.fn, *args)
            else:
                handle = self._queue.submit_nowait(p.fn, *args, idempotency_key=key)
        except (QueueFull, QueueClosed) as exc:
            self._skip(p, when, str(exc))
            return
        self._last[p.name] = handle
        self.fired[p.name] = self.fired.get(p.name, 0) + 1

    def _skip(self, p: Periodic, when: datetime, why: str) -> None:
        self.skipped[p.name] = self.skipped.get(p.name, 0) + 1
        _log.warning("periodic task %s: skipped the %s tick: %s", p.name, when.isoformat(), why)
