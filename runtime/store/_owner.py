"""One owner per (database, queue), and a record of what that owner acknowledged.

Two processes serving the same queue from one SQLite file would run its tasks twice at
once (each start re-queues the other's running tasks as interrupted). So the store that
first recovers or claims a queue takes an exclusive ``flock`` on a sidecar file,
``<db>-lock-<hash of the queue name>``, and holds it until it closes. The kernel drops
the lock when the process dies (kill -9 included), so a crash never leaves a stale lock
to clean up; a second opener, in this process or another, gets a :class:`StoreError`
naming the holder. (``flock`` rather than ``fcntl`` record locks: record locks belong to
the process, so a second store in the same process would not conflict, and closing any
descriptor of the file would drop them.)

The same file keeps the owner's *high-water mark*: the largest task sequence number
committed while it held the lock, written after each commit that stored tasks (not
fsynced: after a power loss the mark can only be behind). If the database later ends
below a mark, acknowledged tasks are gone, typically because its ``-wal`` file was
deleted or truncated after a crash, and the store refuses to open with
:class:`StoreCorrupt` instead of reporting an empty, healthy queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import struct
from dataclasses import dataclass

from .base import StoreError

__all__ = ["Mark", "QueueLock", "lock_path", "read_marks", "reset_marks"]

_log = logging.getLogger("corral.store")

_MAGIC = b"corral-queue-v1\n"
_MARK = struct.Struct("<Q")
_HEADER = len(_MAGIC) + _MARK.size  # then "<pid> <queue>\n", for the error message


def lock_path(db: str, queue: str) -> str:
    digest = hashlib.sha256(queue.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{db}-lock-{digest}"


@dataclass(frozen=True, slots=True)
class Mark:
    path: str
    queue: str
    seq: int


def read_marks(db: str) -> list[Mark]:
    """Every queue's high-water mark recorded next to ``db`` (unreadable files skipped)."""
    marks: list[Mark] = []
    for path in sorted(glob.glob(f"{glob.escape(db)}-lock-*")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            data = os.pread(fd, _HEADER + 4096, 0)
        except OSError:  # pragma: no cover - a lock file we just opened
            continue
        finally:
            os.close(fd)
        if not data.startswith(_MAGIC) or len(data) < _HEADER:
            continue
        (seq,) = _MARK.unpack_from(data, len(_MAGIC))
        text = data[_HEADER:].decode("utf-8", "replace")
        marks.append(Mark(path, text.partition(" ")[2].rstrip("\n"), seq))
    return marks


def reset_marks(db: str) -> None:
    """A new database was created at ``db``: older marks describe a file that is gone."""
    for mark in read_marks(db):
        if mark.seq == 0:
            continue
        _log.warning(
            "task database %s was created anew, but queue %r had tasks committed up to #%d "
            "in an earlier file at that path: those tasks are gone unless that file is "
            "restored",
            db,
            mark.queue,
            mark.seq,
        )
        try:
            fd = os.open(mark.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # pragma: no cover - listed a moment ago
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.pwrite(fd, _MARK.pack(0), len(_MAGIC))
        except OSError:
            pass  # served by a live process: it keeps its own mark
        finally:
            os.close(fd)


class QueueLock:
    """The exclusive lock on one queue of one database file, held until ``release``."""

    def __init__(self, db: str, queue: str, *, fresh_database: bool = False) -> None:
        self.path = lock_path(db, queue)
        self.queue = queue
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path} for queue {queue!r}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreError(
                f"queue {queue!r} of {db} is already being served{holder}: one store per "
                "queue and database at a time (stop the other one, or use another queue "
                "name)"
            ) from None
        except OSError as exc:  # pragma: no cover - a file system without flock
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
        self._fd: int | None = fd
        self.seq = 0 if fresh_database else _stored_mark(fd)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, _HEADER)
            os.pwrite(fd, _MAGIC + _MARK.pack(self.seq), 0)
            os.pwrite(fd, f"{os.getpid()} {queue}\n".encode("utf-8", "replace"), _HEADER)

    def advance(self, seq: int) -> None:
        """Record that tasks up to ``seq`` are committed (called after the commit)."""
        if seq > self.seq and self._fd is not None:
            with contextlib.suppress(OSError):  # best effort: a lower mark only misses loss
                os.pwrite(self._fd, _MARK.pack(seq), len(_MAGIC))
                self.seq = seq

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock


def _stored_mark(fd: int) -> int:
    try:
        data = os.pread(fd, _HEADER, 0)
    except OSError:  # pragma: no cover - a file we just opened
        return 0
    if data.startswith(_MAGIC) and len(data) >= _HEADER:
        return int(_MARK.unpack_from(data, len(_MAGIC))[0])
    return 0


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, _HEADER).decode("utf-8", "replace")
    except OSError:  # pragma: no cover - a file we just opened
        return ""
    pid = text.partition(" ")[0]
    if not pid.isdigit():
        return ""
    return " by this process" if int(pid) == os.getpid() else f" by process {pid}"
