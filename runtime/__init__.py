"""corral: governed concurrency primitives on anyio.

Importing ``corral`` never imports the linter (libcst, flake8, yaml): services that only
use the runtime do not pay for it. The public names are loaded on first use (PEP 562), so
the linter, which lives in the ``corral.lint_rules`` subpackage, does not pay for the
runtime either, and ``import corral`` alone costs almost nothing.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (the linter's start-up)
    from typing import Any

    __version__: str
    from . import guard, metrics, middleware, sync
    from ._default import default_queue, spawn
    from ._identity import current_task_info
    from .durable import DurableHandle
    from .errors import (
        CorralError,
        NoDefaultQueue,
        QueueClosed,
        QueueFull,
        RawConcurrencyError,
        TaskCancelled,
        TaskNotDone,
    )
    from .group import TaskGroup
    from .handles import TaskHandle
    from .observers import Observer
    from .queue import QueueStats, TaskQueue
    from .registry import task
    from .retry import Retry, exponential
    from .schedule import Scheduler, periodic
    from .store import SQLiteStore, StoreCorrupt, StoreError, TaskDeadLettered
    from .store.redis import RedisStore
    from .task_info import TaskInfo


# public name -> the module that defines it (a module itself when the value is None)
_EXPORTS: dict[str, str | None] = {
    "guard": None,
    "metrics": None,
    "middleware": None,
    "sync": None,
    "default_queue": "._default",
    "spawn": "._default",
    "current_task_info": "._identity",
    "DurableHandle": ".durable",
    "CorralError": ".errors",
    "NoDefaultQueue": ".errors",
    "QueueClosed": ".errors",
    "QueueFull": ".errors",
    "RawConcurrencyError": ".errors",
    "TaskCancelled": ".errors",
    "TaskNotDone": ".errors",
    "TaskGroup": ".group",
    "TaskHandle": ".handles",
    "Observer": ".observers",
    "QueueStats": ".queue",
    "TaskQueue": ".queue",
    "task": ".registry",
    "Retry": ".retry",
    "exponential": ".retry",
    "Scheduler": ".schedule",
    "periodic": ".schedule",
    "SQLiteStore": ".store",
    "RedisStore": ".store.redis",
    "StoreCorrupt": ".store",
    "StoreError": ".store",
    "TaskDeadLettered": ".store",
    "TaskInfo": ".task_info",
}

__all__ = [
    "CorralError",
    "DurableHandle",
    "NoDefaultQueue",
    "Observer",
    "QueueClosed",
    "QueueFull",
    "QueueStats",
    "RawConcurrencyError",
    "RedisStore",
    "Retry",
    "SQLiteStore",
    "Scheduler",
    "StoreCorrupt",
    "StoreError",
    "TaskCancelled",
    "TaskDeadLettered",
    "TaskGroup",
    "TaskHandle",
    "TaskInfo",
    "TaskNotDone",
    "TaskQueue",
    "__version__",
    "current_task_info",
    "default_queue",
    "exponential",
    "guard",
    "metrics",
    "middleware",
    "periodic",
    "spawn",
    "sync",
    "task",
]


def _installed_version() -> str:
    """The version pip installed (one source of truth: pyproject.toml's ``version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corral")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read on first use: importlib.metadata is not free
        globals()[name] = installed = _installed_version()
        return installed
    module = _EXPORTS.get(name, "")
    if module == "":
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    if module is None:
        value: Any = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
