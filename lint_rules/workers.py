"""Forked checker processes fed through pipes, with a bounded window of work in flight.

One child per core, forked once the rules are built (so nothing is pickled but a file's
name and bytes, and the result). The parent keeps reading, hashing and prefiltering; each
candidate goes to the child with the fewest bytes in flight (a size-balanced share), and no
child ever holds more than ``WINDOW_BYTES`` or ``WINDOW_FILES`` in flight: the parent
waits for results rather than read ahead, so memory stays bounded at any number of files.

A child that dies (a parser crash, the OOM killer) costs only the files it had not
finished: each is checked again in a process of its own, and reported as CRL901 if that
one dies too. Used only where ``fork_safe()``; elsewhere the runner falls back to a
``spawn`` process pool.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WINDOW_BYTES", "WINDOW_FILES", "ForkPool", "check_alone", "fork_safe"]

WINDOW_BYTES = 4 * 1024 * 1024  # per child: enough to keep it busy, little to hold
WINDOW_FILES = 64
_HEADER = struct.Struct("!Q")
_CHUNK = 1 << 16

Check = Callable[..., Any]  # called with a job's arguments; the first is the file's name


def fork_safe() -> bool:
    """fork() exists, the platform forks safely (not macOS, whose system libraries do not
    survive it), and no other thread runs here that could hold a lock across the fork."""
    if not hasattr(os, "fork") or sys.platform == "darwin":
        return False
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def _frame(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _serve(check: Check, jobs: int, results: int) -> None:
    """The child's loop: a framed (name, bytes) in, a framed outcome out, until EOF."""
    while True:
        header = _read_exactly(jobs, _HEADER.size)
        if header is None:
            return
        body = _read_exactly(jobs, _HEADER.unpack(header)[0])
        if body is None:
            return
        args = pickle.loads(body)
        try:
            outcome: tuple[str, object] = ("ok", check(*args))
        except Exception as exc:  # a bug in the checker: the parent raises it
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        frame = _frame(outcome)
        view = memoryview(frame)
        while view:
            view = view[os.write(results, view) :]


def _fork(check: Check, keep: tuple[int, ...]) -> tuple[int, int, int]:
    """A child serving ``check``; returns (pid, job pipe write end, result pipe read end)."""
    job_r, job_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            for fd in (job_w, res_r, *keep):
                os.close(fd)
            _serve(check, job_r, res_w)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(job_r)
    os.close(res_w)
    return pid, job_w, res_r


def check_alone(check: Check, args: tuple[Any, ...], died: Callable[[str], Any]) -> Any:
    """``check(*args)`` in a process of its own; ``died(args[0])`` if it dies unanswered."""
    shown = args[0]
    pid, job_w, res_r = _fork(check, ())
    try:
        with contextlib.suppress(OSError):  # a child dead already reads as no answer
            os.write(job_w, _frame(args))
        os.close(job_w)
        header = _read_exactly(res_r, _HEADER.size)
        body = _read_exactly(res_r, _HEADER.unpack(header)[0]) if header else None
    finally:
        os.close(res_r)
        os.waitpid(pid, 0)
    if body is None:
        return died(shown)
    status, value = pickle.loads(body)
    if status != "ok":
        raise RuntimeError(f"checker failed on {shown}: {value}")
    return value


@dataclass
class _Child:
    pid: int
    jobs: int  # write end, non-blocking
    results: int  # read end, non-blocking
    outgoing: bytearray = field(default_factory=bytearray)
    incoming: bytearray = field(default_factory=bytearray)
    inflight: deque[tuple[object, tuple[Any, ...], int]] = field(default_factory=deque)
    inflight_bytes: int = 0
    closing: bool = False


class ForkPool:
    """``submit`` work, then ``drain`` every (key, result); see the module docstring."""

    def __init__(self, workers: int, check: Check, died: Callable[[str], Any]) -> None:
        self.check, self.died = check, died
        self.selector = selectors.DefaultSelector()
        self.children: list[_Child] = []
        self.done: list[tuple[object, Any]] = []
        self.writing: set[int] = set()  # job pipes registered for writing
        for _ in range(max(1, workers)):
            self._spawn()

    def __enter__(self) -> ForkPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> None:
        keep = tuple(fd for c in self.children for fd in (c.jobs, c.results))
        pid, jobs, results = _fork(self.check, keep)
        os.set_blocking(jobs, False)
        os.set_blocking(results, False)
        child = _Child(pid, jobs, results)
        self.children.append(child)
        self.selector.register(results, selectors.EVENT_READ, child)

    def submit(self, key: object, args: tuple[Any, ...], size: int) -> None:
        """``check(*args)`` in a child; ``size`` (the file's bytes) counts against the window."""
        while True:
            child = min(self.children, key=lambda c: c.inflight_bytes)
            full = child.inflight_bytes >= WINDOW_BYTES or len(child.inflight) >= WINDOW_FILES
            if not full or not child.inflight:
                break
            self._pump(block=True)
        child.inflight.append((key, args, size))
        child.inflight_bytes += size
        self._send(child, _frame(args))
        self._pump(block=False)

    def drain(self) -> list[tuple[object, Any]]:
        for child in self.children:
            child.closing = True
            if not child.outgoing:
                self._close_jobs(child)
        while any(c.inflight for c in self.children):
            self._pump(block=True)
        return self.done

    def close(self) -> None:
        """End every child (after ``drain`` they are exiting already) and reap it."""
        for child in self.children:
            self._close_jobs(child)
            with contextlib.suppress(OSError):
                os.close(child.results)
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
        self.children = []
        self.selector.close()

    # -- the parent's side of the pipes ---------------------------------------------------
    def _send(self, child: _Child, frame: bytes) -> None:
        had = bool(child.outgoing)
        child.outgoing += frame
        if not had:
            self._write(child)

    def _write(self, child: _Child) -> None:
        try:
            while child.outgoing:
                written = os.write(child.jobs, child.outgoing[:_CHUNK])
                del child.outgoing[:written]
        except BlockingIOError:
            pass
        except OSError:  # the child is gone (its reading end closed): its reader sees EOF
            child.outgoing.clear()
        writing = child.jobs in self.writing
        if child.outgoing and not writing:
            self.selector.register(child.jobs, selectors.EVENT_WRITE, (child,))
            self.writing.add(child.jobs)
        elif not child.outgoing:
            if writing:
                self.selector.unregister(child.jobs)
                self.writing.discard(child.jobs)
            if child.closing:
                self._close_jobs(child)

    def _close_jobs(self, child: _Child) -> None:
        if child.jobs < 0:
            return
        if child.jobs in self.writing:
            self.selector.unregister(child.jobs)
            self.writing.discard(child.jobs)
        os.close(child.jobs)
        child.jobs = -1

    def _pump(self, block: bool) -> None:
        for key, _ in self.selector.select(None if block else 0):
            if isinstance(key.data, tuple):
                self._write(key.data[0])
            else:
                self._read(key.data)

    def _read(self, child: _Child) -> None:
        try:
            chunk = os.read(child.results, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self._dead(child)
            return
        child.incoming += chunk
        while len(child.incoming) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(child.incoming)
            if len(child.incoming) < _HEADER.size + size:
                break
            body = bytes(child.incoming[_HEADER.size : _HEADER.size + size])
            del child.incoming[: _HEADER.size + size]
            key, args, size = child.inflight.popleft()
            child.inflight_bytes -= size
            status, value = pickle.loads(body)
            if status != "ok":
                raise RuntimeError(f"checker failed on {args[0]}: {value}")
            self.done.append((key, value))

    def _dead(self, child: _Child) -> None:
        """Every file the child had not finished, each in a process of its own; a fresh
        child takes its place for what is still to come."""
        self.selector.unregister(child.results)
        self._close_jobs(child)
        os.close(child.results)
        os.waitpid(child.pid, 0)
        self.children.remove(child)
        for key, args, _ in child.inflight:
            self.done.append((key, check_alone(self.check, args, self.died)))
        if not child.closing:
            self._spawn()
