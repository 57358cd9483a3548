"""corral.guard: catch raw concurrency at run time, where the linter cannot see it.

The linter reads source; it cannot see a library that calls ``asyncio.create_task`` for
you, a name built at run time, or code outside the linted tree. While a guard is
installed, every task, thread, executor and process started outside corral is attributed
to its call site and counted, logged or refused::

    guard = corral.guard.install(mode="count")       # production: a Prometheus counter
    with corral.guard.install(mode="raise"):          # tests: RawConcurrencyError at the site
        ...
    async with corral.guard.install(mode="warn"):     # one log line per call site
        ...

What it watches (see the README's "Run-time enforcement" for the exact coverage):

- asyncio: a task factory on the running loop when installed from async code, and on every
  loop made by ``asyncio.new_event_loop`` (so ``asyncio.run``/``anyio.run`` started after
  ``install``) or by :func:`loop_factory`. It chains to a factory already set (e.g.
  ``asyncio.eager_task_factory``) and puts it back on uninstall. Tasks built directly with
  ``asyncio.Task(coro, loop=loop)`` bypass every factory and are not seen.
- trio: a ``trio.abc.Instrument`` (``task_spawned``) added to the running trio run, or
  passed to ``trio.run(..., instruments=[corral.guard.instrument()])``.
- threads: ``threading.Thread.start`` and ``_thread.start_new_thread``.
- executors and processes: ``concurrent.futures`` executors, ``multiprocessing`` pools and
  ``multiprocessing.Process.start``.

Everything patched is restored by :meth:`Guard.uninstall` (or leaving the ``with`` block).
Work corral starts itself, and work the standard library, anyio and trio start on their own
behalf (``asyncio.run``'s main task, ``to_thread`` workers), is never reported.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import fnmatch
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._spawn_site import KIND_BIT, KINDS, Spot, _getframe, caller_of, first_frame, frame_at, locate
from ._spawn_site import _cache as _code_cache
from .errors import RawConcurrencyError

if TYPE_CHECKING:
    import trio
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

__all__ = [
    "KINDS",
    "REPLACEMENTS",
    "Guard",
    "Mode",
    "RawSpawn",
    "current",
    "install",
    "instrument",
    "loop_factory",
    "uninstall",
]

Mode = Literal["count", "warn", "raise"]
_MODES = ("count", "warn", "raise")

#: What to use instead, by kind (the hint in warnings and in RawConcurrencyError).
REPLACEMENTS: dict[str, str] = {
    "task": "corral.spawn / corral.TaskQueue.submit / corral.TaskGroup.start_soon",
    "thread": "corral.sync.spawn / corral.sync.TaskQueue / corral.sync.TaskGroup",
    "executor": "corral.sync.TaskGroup(limit=...) / corral.TaskQueue",
    "process": "corral.sync.TaskQueue (or a process pool in a module listed in allow)",
}
_NOUNS = {"task": "task", "thread": "thread", "executor": "executor", "process": "process"}
# [tool.corral.allow] selectors whose rules ban each kind (selectors may be prefixes: CRL1)
_RULES = {
    "task": ("CRL201", "CRL202", "CRL203", "CRL204", "CRL205", "CRL206"),
    "thread": ("CRL101",),
    "executor": ("CRL102",),
    "process": ("CRL102",),
}
_OTHER = "other"
_TASK_BIT = KIND_BIT["task"]
_get_ident = threading.get_ident
_HITS_LIMIT = 4096

_log = logging.getLogger("corral.guard")


@dataclass(frozen=True)
class RawSpawn:
    """One call site that started raw concurrency, with how often it did.

    ``site`` is the spawning frame (``httpx/_client.py:812``), ``package`` its top-level
    package; ``caller`` is the first application frame that led there when the spawner is
    an installed library (``app/clients.py:40``), else None. ``action`` is what the guard
    did: ``count``, ``warn`` or ``raise``.
    """

    kind: str
    package: str
    site: str
    caller: str | None
    count: int
    third_party: bool
    action: str

    def describe(self) -> str:
        times = "" if self.count == 1 else f" {self.count} times"
        where = f" from {self.site}" + (f", called from {self.caller}" if self.caller else "")
        return f"{self.package} spawned a raw {_NOUNS[self.kind]}{times}{where}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "package": self.package,
            "site": self.site,
            "caller": self.caller,
            "count": self.count,
            "third_party": self.third_party,
            "action": self.action,
        }


class Guard:
    """An installed run-time guard: its counts, its violations and how to remove it.

    Made by :func:`install`; also a context manager (sync and async) that uninstalls on
    exit. Thread-safe: spawns are recorded under one lock, which only raw spawns take.
    """

    def __init__(
        self,
        mode: Mode,
        *,
        allow: Sequence[str],
        allow_paths: dict[str, list[str]],
        root: Path | None,
        third_party_mode: Mode | None,
        max_sites: int,
        track: bool,
    ) -> None:
        self.mode: Mode = mode
        self.third_party_mode: Mode = third_party_mode or mode
        self.allow = tuple(allow)
        self.max_sites = max_sites
        self.track = track
        self._allow_paths = allow_paths
        self._root = root
        self._lock = threading.Lock()
        # every counter key, with the counts taken under the lock; single-threaded hooks (a
        # loop's task factory, a trio run's instrument) add to a shard of their own without
        # the lock, and only for keys already here, so a shard's keys change under the lock
        # alone and the scrape can read them while the hook counts
        self._counts: dict[tuple[str, str, str], int] = {}
        self._shards: list[dict[tuple[str, str, str], int]] = []
        self._first: dict[tuple[str, str, str], RawSpawn] = {}
        self._packages: set[str] = set()
        self._allowed: dict[tuple[str, str], bool] = {}
        self._violations: list[RawSpawn] = []
        # (kind, id(code), line) of a spawner frame -> (code, counter key or None): what the
        # slow path decided for that frame, which depends on the frame alone. Used in count
        # and warn modes without tracking; the code is held so its id is not reused.
        self._hits: dict[tuple[str, int, int], tuple[types.CodeType, tuple[str, str, str] | None]]
        self._hits = {}
        self._fast = not track and "raise" not in (mode, self.third_party_mode)
        self._installed = False
        self._undo: list[Callable[[], None]] = []
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Factory] = (
            weakref.WeakKeyDictionary()
        )
        self._trio_runs: list[tuple[object, trio.abc.Instrument]] = []
        #: tasks and threads this guard saw spawned outside corral (``track=True`` only)
        self.tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self.trio_tasks: set[trio.lowlevel.Task] = set()
        self.threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._spot_of: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()

    # -- what it saw ------------------------------------------------------------------
    def spawns(self) -> list[RawSpawn]:
        """Every reported call site with its count, most frequent first."""
        with self._lock:
            counts = self._totals()
            rows = [replace(first, count=counts[key]) for key, first in self._first.items()]
        return sorted(rows, key=lambda r: (-r.count, r.kind, r.package, r.site))

    @property
    def violations(self) -> list[RawSpawn]:
        """Spawns refused in ``raise`` mode (also those that trio could not refuse)."""
        with self._lock:
            return list(self._violations)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._totals().values())

    def site_of(self, work: object) -> str | None:
        """The call site that spawned a tracked task or thread (``track=True``)."""
        return self._spot_of.get(work)

    def metric_families(self) -> Iterator[Metric]:
        """``corral_raw_spawns_total{kind,package,site}`` for the corral collector."""
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "corral_raw_spawns",
            "Tasks, threads, executors and processes started outside corral",
            labels=["kind", "package", "site"],
        )
        with self._lock:
            rows = list(self._totals().items())
        for (kind, package, site), count in rows:
            family.add_metric([kind, package, site], count)
        yield family

    def _totals(self) -> dict[tuple[str, str, str], int]:
        """Counts by key, shards included (the caller holds the lock)."""
        totals = dict(self._counts)
        for shard in self._shards:
            for key, count in list(shard.items()):
                totals[key] += count
        return totals

    def _shard(self) -> dict[tuple[str, str, str], int]:
        """A counter shard for a hook that only one thread runs."""
        shard: dict[tuple[str, str, str], int] = {}
        with self._lock:
            self._shards.append(shard)
        return shard

    # -- recording ----------------------------------------------------------------------
    def _seen(
        self,
        kind: str,
        frame: types.FrameType | None,
        shard: dict[tuple[str, str, str], int] | None = None,
    ) -> str | None:
        """What every hook calls: record a ``kind`` spawn seen at ``frame``.

        Returns the site to track the spawned work under (``track=True`` only). A spawner
        frame seen before costs a walk past the primitives, a dict lookup and an increment
        (into ``shard`` when the caller owns one, else under the lock); the first sight of
        a frame takes the full path."""
        if self._fast:
            spawner = first_frame(frame, KIND_BIT[kind])
            if spawner is not None:
                code = spawner.f_code
                hit = self._hits.get((kind, id(code), spawner.f_lineno))
                if hit is not None and hit[0] is code:
                    key = hit[1]
                    if key is None:
                        return None
                    if shard is not None and key in shard:
                        shard[key] += 1
                        return None
                    with self._lock:
                        if shard is None:
                            self._counts[key] += 1
                        else:
                            shard[key] = 1  # a new key: only under the lock
                    return None
        site, tracked = self._spawned(kind, frame)
        return site if tracked and self.track else None

    def _spawned(self, kind: str, frame: types.FrameType | None) -> tuple[str | None, bool]:
        """Record a spawn seen at ``frame``; raises in ``raise`` mode.

        Returns (site, tracked): the site when the spawn was reported or allowed (work the
        test started), None for corral's and the runtime's own work."""
        spot, spawner = locate(frame, kind)
        if spot is None or spawner is None:
            self._remember(kind, spawner, None)
            return None, False
        if self._is_allowed(kind, spot):
            self._remember(kind, spawner, None)
            return spot.site, True
        mode = self.third_party_mode if spot.third_party else self.mode
        key, spawn = self._record(kind, spot, spawner, mode)
        self._remember(kind, spawner, key)
        if spawn is not None:
            self._act(spawn, mode)
        return spot.site, True

    def _remember(
        self, kind: str, spawner: types.FrameType | None, key: tuple[str, str, str] | None
    ) -> None:
        if self._fast and spawner is not None and len(self._hits) < _HITS_LIMIT:
            code = spawner.f_code
            self._hits[(kind, id(code), spawner.f_lineno)] = (code, key)

    def _record(
        self, kind: str, spot: Spot, spawner: types.FrameType, mode: str
    ) -> tuple[tuple[str, str, str], RawSpawn | None]:
        """Count the spawn under its counter key; also returns the site's record the first
        time it is seen, and for every spawn in ``raise`` mode (each one is refused)."""
        with self._lock:
            package = spot.package
            if package not in self._packages and len(self._packages) >= self.max_sites:
                package = _OTHER
            key = (kind, package, spot.site)
            seen = key in self._counts
            if not seen and len(self._counts) >= self.max_sites:
                key = (kind, package, _OTHER)
                seen = key in self._counts
            self._counts[key] = self._counts.get(key, 0) + 1
            if seen and mode != "raise":
                return key, None
            first = self._first.get(key)
            if first is None:
                self._packages.add(package)
                first = self._first[key] = RawSpawn(
                    kind, package, key[2], caller_of(spawner), 1, spot.third_party, mode
                )
            if mode == "raise":
                exact = replace(first, site=spot.site, count=1)
                self._violations.append(exact)
                return key, exact
            return key, first

    def _act(self, spawn: RawSpawn, mode: str) -> None:
        if mode == "warn":
            _log.warning("corral guard: %s; use %s", spawn.describe(), REPLACEMENTS[spawn.kind])
        elif mode == "raise":
            raise RawConcurrencyError(
                f"{spawn.describe()}: raw concurrency is not allowed here; use "
                f"{REPLACEMENTS[spawn.kind]}",
                spawn=spawn,
            )

    def _is_allowed(self, kind: str, spot: Spot) -> bool:
        key = (kind, spot.filename if self._allow_paths else spot.module)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = _module_allowed(spot.module, self.allow) or self._path_allowed(kind, spot)
            if len(self._allowed) < 4096:
                self._allowed[key] = allowed
        return allowed

    def _path_allowed(self, kind: str, spot: Spot) -> bool:
        if not self._allow_paths or self._root is None:
            return False
        try:
            relpath = Path(spot.filename).resolve().relative_to(self._root).as_posix()
        except (ValueError, OSError):
            return False
        globs = [
            glob
            for selector, patterns in self._allow_paths.items()
            if any(code.startswith(selector) for code in _RULES[kind])
            for glob in patterns
        ]
        if not globs:
            return False
        import pathspec

        return bool(pathspec.GitIgnoreSpec.from_lines(globs).match_file(relpath))

    # -- hooks ------------------------------------------------------------------------
    def _track(self, work: object, site: str | None, into: Any) -> None:
        if site is not None:
            into.add(work)
            self._spot_of[work] = site

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Watch ``loop`` (default: the running asyncio loop or trio run) until uninstall.

        :func:`install` calls this itself when it runs in async code; call it from async
        code when the guard was installed before the loop started some other way."""
        if loop is None:
            loop = _running_loop()
            if loop is None:
                self._attach_trio()
                return
        if loop in self._loops or loop.is_closed():
            return
        previous = loop.get_task_factory()
        factory = _Factory(previous, self)
        loop.set_task_factory(factory)
        self._loops[loop] = factory

    def detach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Stop watching ``loop`` (default: the running one) and put its factory back."""
        if loop is None:
            loop = _running_loop()
            if loop is None:
                self._detach_trio()
                return
        factory = self._loops.pop(loop, None)
        if factory is not None:
            _restore(loop, factory)

    def _attach_trio(self) -> None:
        running = _trio_run()
        if running is None:
            return
        trio_mod, root = running
        if any(run is root for run, _ in self._trio_runs):
            return
        inst = _instrument_class()(self)
        trio_mod.lowlevel.add_instrument(inst)
        self._trio_runs.append((root, inst))

    def _detach_trio(self) -> None:
        running = _trio_run()
        if running is None:
            return
        trio_mod, root = running
        for entry in list(self._trio_runs):
            if entry[0] is root:
                self._trio_runs.remove(entry)
                with contextlib.suppress(KeyError):
                    trio_mod.lowlevel.remove_instrument(entry[1])

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def installed(self) -> bool:
        return self._installed

    def uninstall(self) -> None:
        """Remove every hook and put back what was there before (idempotent)."""
        global _current
        with _install_lock:
            if not self._installed:
                return
            self._installed = False
            if _current is self:
                _current = None
            for undo in reversed(self._undo):
                undo()
            self._undo.clear()
            for loop, factory in list(self._loops.items()):
                _restore(loop, factory)
            self._loops.clear()
            self._detach_trio()  # other trio runs drop it: the instrument checks _current
            self._trio_runs.clear()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.uninstall()


class _Factory:
    """The task factory set on a watched loop; chains to the factory that was there.

    A loop runs on one thread, so a factory bound to a guard counts into its own shard
    without the guard's lock (from any other thread, a misuse of asyncio, it takes the lock).
    """

    __slots__ = ("guard", "previous", "shard", "thread")

    def __init__(self, previous: Callable[..., Any] | None, guard: Guard | None) -> None:
        self.previous = previous
        self.guard = guard  # None: follow whichever guard is installed (loop_factory loops)
        self.shard = None if guard is None else guard._shard()
        self.thread: int | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        guard = _current if self.guard is None else self.guard
        site = None
        if guard is not None and guard._installed:
            shard = self.shard
            if shard is not None and self.thread != _get_ident():
                shard = self._claim(guard)
            if shard is None or not guard._fast or not self._counted_fast(guard, shard):
                site = self._slow(guard, coro, shard)
        if self.previous is None:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        else:
            task = self.previous(loop, coro, **kwargs)
        if site is not None and guard is not None:
            guard._track(task, site, guard.tasks)
        return task

    @staticmethod
    def _counted_fast(guard: Guard, shard: dict[tuple[str, str, str], int]) -> bool:
        """The fast path, run once per task: walk past the task primitives and, if the
        spawner frame was seen before, count it into ``shard``. False: take the full path."""
        frame = _getframe(2) if _getframe is not None else None
        cache = _code_cache
        while frame is not None:
            code = frame.f_code
            entry = cache.get(id(code))
            if entry is None or entry[0] is not code:
                return False
            if not entry[1].flags & _TASK_BIT:
                break
            frame = frame.f_back
        else:
            return False
        hit = guard._hits.get(("task", id(code), frame.f_lineno))
        if hit is None or hit[0] is not code:
            return False
        key = hit[1]
        if key is None:
            return True
        if key not in shard:
            return False
        shard[key] += 1
        return True

    @staticmethod
    def _slow(guard: Guard, coro: Any, shard: dict[tuple[str, str, str], int] | None) -> str | None:
        try:
            return guard._seen("task", frame_at(2), shard)
        except RawConcurrencyError:
            if isinstance(coro, types.CoroutineType):
                coro.close()  # refused: it will never run, so no "never awaited" warning
            raise

    def _claim(self, guard: Guard) -> dict[tuple[str, str, str], int] | None:
        """The shard belongs to the first thread that calls; any other thread gets None."""
        with guard._lock:
            if self.thread is None:
                self.thread = _get_ident()
        return self.shard if self.thread == _get_ident() else None


def _restore(loop: asyncio.AbstractEventLoop, factory: _Factory) -> None:
    """Put back the factory ``factory`` replaced, unless someone replaced ours since."""
    if not loop.is_closed() and loop.get_task_factory() is factory:
        loop.set_task_factory(factory.previous)


_instrument_cls: type[Any] | None = None


def _instrument_class() -> type[Any]:
    """The trio Instrument type, built on first use so that importing corral never imports trio."""
    global _instrument_cls
    if _instrument_cls is None:
        import trio

        class _GuardInstrument(trio.abc.Instrument):
            """Reports trio tasks spawned outside corral (an Instrument cannot raise: trio
            removes an instrument that does, so ``raise`` mode refuses at ``start_soon``)."""

            def __init__(self, guard: Guard | None) -> None:
                self.guard = guard
                # a trio run is single-threaded: a bound instrument counts into a shard
                self.shard = None if guard is None else guard._shard()

            def task_spawned(self, task: trio.lowlevel.Task) -> None:
                guard = _current if self.guard is None else self.guard
                if guard is None or not guard._installed:
                    return
                try:
                    site = guard._seen("task", frame_at(1), self.shard)
                except RawConcurrencyError:
                    return  # recorded as a violation; the nursery wrapper raises where it can
                if site is not None:
                    guard._track(task, site, guard.trio_tasks)

            def task_exited(self, task: trio.lowlevel.Task) -> None:
                guard = _current if self.guard is None else self.guard
                if guard is not None:
                    guard.trio_tasks.discard(task)

        _instrument_cls = _GuardInstrument
    return _instrument_cls


def instrument() -> trio.abc.Instrument:
    """A trio instrument that reports to whichever guard is installed:
    ``trio.run(main, instruments=[corral.guard.instrument()])``."""
    inst: trio.abc.Instrument = _instrument_class()(None)
    return inst


def loop_factory() -> asyncio.AbstractEventLoop:
    """A new event loop watched by whichever guard is installed, now or later:
    ``asyncio.Runner(loop_factory=corral.guard.loop_factory)`` or ``asyncio.run(main(),
    loop_factory=...)`` (3.12+) or ``anyio.run(main, backend_options={"loop_factory": ...})``."""
    loop = _new_event_loop()
    loop.set_task_factory(_Factory(loop.get_task_factory(), None))
    return loop


_new_event_loop = asyncio.new_event_loop
_install_lock = threading.RLock()
_current: Guard | None = None


def current() -> Guard | None:
    """The installed guard, if any."""
    return _current


def install(
    mode: Mode = "count",
    allow: Iterable[str] = (),
    *,
    third_party_mode: Mode | None = None,
    pyproject: str | Path | None = None,
    registry: CollectorRegistry | None = None,
    metrics: bool = True,
    max_sites: int = 100,
    track: bool = False,
) -> Guard:
    """Start watching for raw concurrency; returns the :class:`Guard` (a context manager).

    ``mode``: ``count`` (the ``corral_raw_spawns_total`` counter only), ``warn`` (plus one
    log line per call site) or ``raise`` (:class:`corral.RawConcurrencyError` in the
    spawning code). ``third_party_mode`` applies instead to spawns from installed libraries
    (files under ``site-packages``): ``install("raise", third_party_mode="count")`` refuses
    the application's raw spawns and only counts its libraries'. ``allow``: module globs
    (``"myservice.infra.*"``) whose spawns are not reported. ``pyproject``: also honour the
    path globs of its ``[tool.corral.allow]`` table. ``max_sites`` bounds the counter's
    label sets: further sites count under ``site="other"``. ``track`` keeps weak references
    to the work spawned outside corral, for leak reports (the pytest plugin uses it).
    """
    global _current
    if mode not in _MODES:
        raise ValueError(f"corral.guard mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if third_party_mode is not None and third_party_mode not in _MODES:
        raise ValueError(
            f"corral.guard third_party_mode must be one of {', '.join(_MODES)}, "
            f"got {third_party_mode!r}"
        )
    if isinstance(max_sites, bool) or not isinstance(max_sites, int) or max_sites < 1:
        raise ValueError(f"corral.guard max_sites must be a positive int, got {max_sites!r}")
    globs = [allow] if isinstance(allow, str) else list(allow)
    for glob in globs:
        if not isinstance(glob, str) or not glob:
            raise TypeError(f"corral.guard allow takes module globs (str), got {glob!r}")
    allow_paths: dict[str, list[str]] = {}
    root = None
    if pyproject is not None:
        allow_paths = read_allow(pyproject)
        root = Path(pyproject).resolve().parent
    guard = Guard(
        mode,
        allow=globs,
        allow_paths=allow_paths,
        root=root,
        third_party_mode=third_party_mode,
        max_sites=max_sites,
        track=track,
    )
    with _install_lock:
        if _current is not None:
            raise RuntimeError(
                "a corral guard is already installed: uninstall it first "
                "(corral.guard.current().uninstall())"
            )
        _current = guard
        guard._installed = True
        _patch_all(guard)
    if metrics:
        from .metrics import collector_for

        collector_for(registry).add_source(guard)
    guard.attach()
    return guard


def uninstall() -> None:
    """Uninstall the installed guard, if any."""
    guard = _current
    if guard is not None:
        guard.uninstall()


def read_allow(pyproject: str | Path) -> dict[str, list[str]]:
    """The ``[tool.corral.allow]`` table of ``pyproject`` (rule selector -> path globs)."""
    import tomllib

    path = Path(pyproject)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"corral.guard: cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("corral", {}).get("allow", {})
    if not isinstance(table, dict):
        raise ValueError(f"corral.guard: {path}: [tool.corral.allow] must be a table")
    out: dict[str, list[str]] = {}
    for selector, globs in table.items():
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise ValueError(
                f"corral.guard: {path}: tool.corral.allow.{selector} must be a list of globs"
            )
        out[str(selector)] = list(globs)
    return out


def _module_allowed(module: str, globs: Sequence[str]) -> bool:
    for glob in globs:
        if fnmatch.fnmatchcase(module, glob):
            return True
        if glob.endswith(".*") and module == glob[:-2]:
            return True  # "uvicorn.*" covers the package's __init__ too
    return False


def _trio_run() -> tuple[types.ModuleType, object] | None:
    """trio and the root task of the trio run this code runs in, if any (without importing
    trio: a process that never imported it has no trio run)."""
    trio_mod = sys.modules.get("trio")
    if trio_mod is None:
        return None
    try:
        return trio_mod, trio_mod.lowlevel.current_root_task()
    except RuntimeError:
        return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- patches: each records how to put the original back ------------------------------------
def _patch(guard: Guard, owner: Any, name: str, replacement: Any) -> None:
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, replacement)

    def undo() -> None:
        setattr(owner, name, original)

    guard._undo.append(undo)


def _patch_all(guard: Guard) -> None:
    import concurrent.futures
    import multiprocessing.pool
    import multiprocessing.process

    # threads
    thread_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        site = _guarded_spawn("thread")
        thread_start(self)
        if site is not None:
            guard._track(self, site, guard.threads)

    start.__wrapped__ = thread_start  # type: ignore[attr-defined]
    _patch(guard, threading.Thread, "start", start)
    start_new = _thread.start_new_thread

    def start_new_thread(function: Callable[..., object], *args: Any) -> int:
        _guarded_spawn("thread")
        return start_new(function, *args)

    _patch(guard, _thread, "start_new_thread", start_new_thread)
    if hasattr(_thread, "start_new"):
        _patch(guard, _thread, "start_new", start_new_thread)

    # executors and process pools
    for cls in (
        concurrent.futures.ThreadPoolExecutor,
        concurrent.futures.ProcessPoolExecutor,
        multiprocessing.pool.Pool,
    ):
        _patch(guard, cls, "__init__", _wrap_init(cls.__init__))
    process_start = multiprocessing.process.BaseProcess.start

    def process_start_guarded(self: multiprocessing.process.BaseProcess) -> None:
        _guarded_spawn("process")
        process_start(self)

    _patch(guard, multiprocessing.process.BaseProcess, "start", process_start_guarded)

    # asyncio loops made from now on
    def new_event_loop() -> asyncio.AbstractEventLoop:
        loop = _new_event_loop()
        if guard._installed:
            guard.attach(loop)
        return loop

    _patch(guard, asyncio.events, "new_event_loop", new_event_loop)
    _patch(guard, asyncio, "new_event_loop", new_event_loop)

    # trio: refuse at start_soon/start in raise mode (an Instrument cannot raise)
    trio_mod = sys.modules.get("trio")
    if trio_mod is not None and "raise" in (guard.mode, guard.third_party_mode):
        _patch_nursery(guard, trio_mod)


def _guarded_spawn(kind: str) -> str | None:
    guard = _current
    if guard is None or not guard._installed:
        return None
    return guard._seen(kind, frame_at(2))


def _wrap_init(init: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        _guarded_spawn("executor")
        init(self, *args, **kwargs)

    __init__.__wrapped__ = init  # type: ignore[attr-defined]
    return __init__


def _patch_nursery(guard: Guard, trio_mod: types.ModuleType) -> None:
    nursery = trio_mod.Nursery
    start_soon = nursery.start_soon
    start_async = nursery.start

    def _refuse_if_raw() -> None:
        # the instrument counts the spawn; here only a refusal matters, before the task exists
        spot, spawner = locate(frame_at(2), "task")
        if spot is None or spawner is None or not guard._installed:
            return
        mode = guard.third_party_mode if spot.third_party else guard.mode
        if mode == "raise" and not guard._is_allowed("task", spot):
            _, spawn = guard._record("task", spot, spawner, mode)
            if spawn is not None:
                guard._act(spawn, mode)

    def guarded_start_soon(self: Any, *args: Any, **kwargs: Any) -> None:
        _refuse_if_raw()
        start_soon(self, *args, **kwargs)

    async def guarded_start(self: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_if_raw()
        return await start_async(self, *args, **kwargs)

    _patch(guard, nursery, "start_soon", guarded_start_soon)
    _patch(guard, nursery, "start", guarded_start)
