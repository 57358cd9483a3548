"""WAL checkpoints on a thread of their own, off the committing writer's path.

SQLite normally checkpoints inside whichever commit crosses the WAL size threshold, so
now and then one group commit also copies pages back into the database file and fsyncs
it: a latency spike for every submitter waiting on that commit. The store turns the
automatic checkpoint off on its writer connection and lets this thread run PASSIVE
checkpoints (which never block writers) on its own connection instead.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading

__all__ = ["Checkpointer"]


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds until stopped."""

    def __init__(self, path: str, *, interval: float = 0.5) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"corral-store-checkpoint:{self._path}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Blocking: signal the thread and wait for it (call it off the event loop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:  # pragma: no cover - the writer opened the same file already
            return
        try:
            while not self._stop.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):  # busy or I/O: try again later
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()
