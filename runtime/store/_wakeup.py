"""A wake-up a store sets when a cancel arrives, and the runner's check waits on.

Both stores wait the same way in ``cancel_requests``: until the interval passes or a
cancel made through this store object (or seen by the Redis lease renewal) sets it. The
event is made on first use, on the event loop (anyio needs a running backend).
"""

from __future__ import annotations

import anyio

__all__ = ["Wakeup"]


class Wakeup:
    """Set from the loop; ``wait`` returns at once if it was set since the last wait."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def set(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        self._event.set()

    async def wait(self, timeout: float) -> None:
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        if not event.is_set():
            with anyio.move_on_after(timeout):
                await event.wait()
        self._event = anyio.Event()  # a set() from now on wakes the next wait
