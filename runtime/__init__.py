"""corral: governed concurrency primitives on anyio.

Importing ``corral`` never imports the linter (libcst, flake8, yaml): services that only
use the runtime do not pay for it.
"""

from __future__ import annotations

from . import sync  # TaskGroup and the sync facade
from .errors import (
    CorralError,
    NoDefaultQueue,
    QueueClosed,
    QueueFull,
    TaskCancelled,
    TaskNotDone,
)
from .group import TaskGroup
from .handles import TaskHandle

__version__ = "0.1.0"

__all__ = [
    "CorralError",
    "NoDefaultQueue",
    "QueueClosed",
    "QueueFull",
    "TaskCancelled",
    "TaskGroup",
    "TaskHandle",
    "TaskNotDone",
    "__version__",
    "sync",
]
