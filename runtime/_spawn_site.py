"""Where a raw spawn came from: the frame walk behind ``corral.guard``'s attribution.

A spawn hook (task factory, ``Thread.start`` wrapper, trio instrument...) runs a few frames
below the code that asked for concurrency. Walking outwards, frames fall into four roles:

- *primitive*: the spawning API itself (``asyncio.create_task``, ``loop.create_task``,
  ``TaskGroup.create_task``, ``gather``, anyio's and trio's ``start_soon``, the guard's own
  wrappers). They are skipped: the interesting frame is the one that called them.
- *own*: corral. Work corral starts (queue and group workers, ``corral.sync`` threads, store
  writers) is governed by definition, so it is never reported. This costs corral nothing:
  the mark is *where the code lives*, so no flag is set on any corral path.
- *runtime*: the standard library, anyio and trio calling a primitive on their own behalf
  (``asyncio.run``'s main task, happy-eyeballs connection races, ``to_thread`` worker
  threads, executor worker threads). They are structured or bounded by construction, so
  they are not reported either.
- anything else is the *spawner*: its file and line are the call site, its top-level
  package the package label. For a spawner in an installed library the walk goes on to the
  first frame of the application (not a library, not the runtime) to say who called it.

Frames are classified once per code object (cached), so a walk costs a few dict lookups.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import CodeType, FrameType

__all__ = ["KINDS", "KIND_BIT", "Spot", "caller_of", "first_frame", "frame_at", "locate"]

#: The kinds of raw concurrency the guard reports (the ``kind`` label).
KINDS = ("task", "thread", "executor", "process")
_TASK, _THREAD, _EXECUTOR, _PROCESS = (1, 2, 4, 8)
_ALL = _TASK | _THREAD | _EXECUTOR | _PROCESS
KIND_BIT = {"task": _TASK, "thread": _THREAD, "executor": _EXECUTOR, "process": _PROCESS}

# role flags beside the kind bits
_OWN = 16
_RUNTIME = 32

# module -> function names (None: every function) that are spawning primitives, by kind
_PRIMITIVES: dict[str, tuple[int, frozenset[str] | None]] = {
    "asyncio.tasks": (
        _TASK,
        frozenset({"create_task", "ensure_future", "_ensure_future", "gather"}),
    ),
    "asyncio.base_events": (_TASK, frozenset({"create_task"})),
    "asyncio.taskgroups": (_TASK, frozenset({"create_task"})),
    "anyio._backends._asyncio": (_TASK, None),
    "anyio._backends._trio": (_TASK, None),
    "anyio.abc._tasks": (_TASK, None),
    "anyio._core._tasks": (_TASK, None),
    "trio._core._run": (
        _TASK,
        frozenset({"spawn_impl", "start_soon", "start", "spawn_system_task"}),
    ),
    "trio._core._instrumentation": (_TASK, None),
    "threading": (_THREAD, None),
    "concurrent.futures.thread": (_EXECUTOR, frozenset({"__init__"})),
    "concurrent.futures.process": (_EXECUTOR, frozenset({"__init__"})),
    "concurrent.futures.interpreter": (_EXECUTOR, frozenset({"__init__"})),
    "multiprocessing.pool": (_EXECUTOR, frozenset({"__init__"})),
    "multiprocessing.process": (_PROCESS, frozenset({"start"})),
}
# the concurrency runtime besides the standard library: its own spawns are structured
_RUNTIME_PACKAGES = frozenset({"anyio", "trio", "sniffio", "outcome"})
_GUARD_MODULES = frozenset({"corral.guard", "corral._spawn_site"})
_THIRD_PARTY_DIRS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")

_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class _CodeInfo:
    flags: int
    module: str
    package: str
    path: str  # the file as the import system names it: ``httpx/_client.py``
    filename: str
    third_party: bool


@dataclass(frozen=True)
class Spot:
    """The frame that spawned: its module, top-level package and ``path:line``."""

    module: str
    package: str
    site: str
    filename: str
    third_party: bool


# keyed by id, holding the code object itself: code objects compare equal across files
# (equality ignores co_filename), so they cannot be dict keys here; the strong reference
# keeps the id from being reused while the entry lives
_cache: dict[int, tuple[CodeType, _CodeInfo]] = {}


def _module_path(filename: str, module: str) -> str:
    """``httpx/_client.py`` for module ``httpx._client``: the file as imported, not as stored."""
    parts = filename.replace(os.sep, "/").split("/")
    depth = module.count(".") + 1
    if parts and parts[-1] == "__init__.py":
        depth += 1
    if module in ("__main__", "") or depth > len(parts):
        return parts[-1]
    return "/".join(parts[-depth:])


def _classify(code: CodeType, module: str) -> _CodeInfo:
    package = module.partition(".")[0]
    flags = 0
    if module in _GUARD_MODULES:
        flags = _ALL
    elif package == "corral":
        flags = _OWN
    else:
        primitive = _PRIMITIVES.get(module)
        if primitive is not None and (primitive[1] is None or code.co_name in primitive[1]):
            flags = primitive[0]
        if package in _RUNTIME_PACKAGES or package in sys.stdlib_module_names:
            flags |= _RUNTIME
    filename = code.co_filename
    return _CodeInfo(
        flags=flags,
        module=module,
        package=package or "<unknown>",
        path=_module_path(filename, module),
        filename=filename,
        third_party=any(d in filename for d in _THIRD_PARTY_DIRS),
    )


def _info(frame: FrameType) -> _CodeInfo:
    code = frame.f_code
    entry = _cache.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()  # bounded: exec'd or generated code must not grow it forever
    name = frame.f_globals.get("__name__")
    info = _classify(code, name if isinstance(name, str) else "")
    _cache[id(code)] = (code, info)
    return info


def first_frame(frame: FrameType | None, bit: int) -> FrameType | None:
    """The first frame from ``frame`` outwards that is not a ``bit``-kind primitive."""
    cache = _cache
    while frame is not None:
        code = frame.f_code
        entry = cache.get(id(code))
        flags = entry[1].flags if entry is not None and entry[0] is code else _info(frame).flags
        if not flags & bit:
            return frame
        frame = frame.f_back
    return None


def locate(frame: FrameType | None, kind: str) -> tuple[Spot | None, FrameType | None]:
    """The spawner of a ``kind`` spawn seen at ``frame`` and the spawner's frame.

    The spot is None when corral or the runtime spawned (not reported); the frame (the first
    one past the primitives) is returned either way: the result depends on it alone, which
    is what lets the guard remember it."""
    spawner = first_frame(frame, KIND_BIT[kind])
    if spawner is None:
        return None, None
    info = _info(spawner)
    if info.flags & (_OWN | _RUNTIME):
        return None, spawner
    spot = Spot(
        info.module,
        info.package,
        f"{info.path}:{spawner.f_lineno}",
        info.filename,
        info.third_party,
    )
    return spot, spawner


def caller_of(frame: FrameType) -> str | None:
    """The first application frame (not a library, the runtime or corral) that led to the
    spawner ``frame``, as ``path:line``; None when the spawner is application code."""
    if not _info(frame).third_party:
        return None
    current = frame.f_back
    while current is not None:
        info = _info(current)
        if not info.third_party and not info.flags & (_OWN | _RUNTIME | _ALL):
            return f"{info.path}:{current.f_lineno}"
        current = current.f_back
    return None


_getframe = getattr(sys, "_getframe", None)


def frame_at(depth: int) -> FrameType | None:
    """The caller's frame ``depth`` levels up; found through ``inspect`` where
    ``sys._getframe`` does not exist."""
    if _getframe is None:  # pragma: no cover - CPython and PyPy both have it
        import inspect

        current = inspect.currentframe()
        for _ in range(depth + 1):
            current = current.f_back if current is not None else None
        return current
    try:
        frame: FrameType = _getframe(depth + 1)
    except ValueError:
        return None
    return frame
