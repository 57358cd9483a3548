"""corral: governed concurrency primitives on anyio.

Importing ``corral`` never imports the linter (libcst, flake8, yaml): services that only
use the runtime do not pay for it.
"""

from __future__ import annotations

from .errors import (
    CorralError,
    NoDefaultQueue,
    QueueClosed,
    QueueFull,
    TaskCancelled,
    TaskNotDone,
)
from .handles import TaskHandle

__version__ = "0.1.0"

__all__ = [
    "CorralError",
    "NoDefaultQueue",
    "QueueClosed",
    "QueueFull",
    "TaskCancelled",
    "TaskHandle",
    "TaskNotDone",
    "__version__",
]
