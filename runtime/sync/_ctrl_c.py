"""Ctrl-C while corral.sync blocks the main thread: noted by the handler, raised by the wait.

CPython runs the SIGINT handler at the main thread's next bytecode boundary, wherever that
is. If the garbage collector is running a finalizer there at that moment (a collected
generator's ``finally``, a ``__del__``, a weakref callback), the default handler's
``KeyboardInterrupt`` is raised inside the finalizer, and CPython prints it as "Exception
ignored" and drops it: the wait goes on as if Ctrl-C had never been pressed. It can also land
between two steps that must not be separated (a queue marked closing but not yet draining).

So while a group or queue waits in the main thread, SIGINT only notes the press, and the
wait, which wakes every ``POLL`` seconds, raises ``KeyboardInterrupt`` itself, at a point
where the caller handles it. asyncio.Runner treats Ctrl-C the same way: its handler never
raises into whatever code happens to run. Only the default handler is replaced, and only for
the wait: a program with its own SIGINT handler keeps it, and other threads are unaffected.
"""

from __future__ import annotations

import signal
import threading
import types
from collections.abc import Callable

__all__ = ["POLL", "CtrlC"]

POLL = 0.05  # seconds: how late a noted Ctrl-C can be raised


class CtrlC:
    """``with CtrlC() as ctrl_c: ctrl_c.wait(done)``: see the module docstring.

    ``done(timeout)`` waits up to ``timeout`` seconds (``None``: without limit) and says
    whether the awaited thing happened. A press noted anywhere inside the block is raised
    as ``KeyboardInterrupt`` by ``wait``, or when the block ends if no wait raised it.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Callable[[int, types.FrameType | None], object] | int | None = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return self  # ignored, or the program's own handler: leave it alone
        try:
            self._previous = signal.signal(signal.SIGINT, self._note)
        except ValueError:  # not the main interpreter
            return self
        self._installed = True
        return self

    def _note(self, signum: int, frame: types.FrameType | None) -> None:
        self.pressed = True

    def wait(self, done: Callable[[float | None], bool]) -> None:
        if not self._installed:
            done(None)  # the default handler raises KeyboardInterrupt out of this wait
            return
        while not done(POLL):
            self._raise_if_pressed()
        self._raise_if_pressed()

    def _raise_if_pressed(self) -> None:
        if self.pressed:
            self.pressed = False
            raise KeyboardInterrupt

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if self._installed:
            self._installed = False
            if signal.getsignal(signal.SIGINT) == self._note:  # not replaced meanwhile
                signal.signal(signal.SIGINT, self._previous)
        self._raise_if_pressed()  # pressed after the wait, or while another error left
