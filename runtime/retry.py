"""Retry policy of durable tasks: how many starts, how long to wait, which errors.

Unlike the in-memory ``corral.middleware.retry`` (which sleeps inside the worker), a
durable retry is *persisted* with its ``not_before`` time and the worker moves on, so a
restart neither loses a pending retry nor runs it early.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Backoff", "Retry", "exponential"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the n-th retry (n >= 1): ``min(cap, base * factor**(n-1))`` seconds."""

    base: float
    cap: float
    factor: float = 2.0

    def __call__(self, retry_number: int) -> float:
        # Compute in log-free steps and stop at the cap, so huge n cannot overflow.
        delay = self.base
        for _ in range(retry_number - 1):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(self.cap, delay)


def exponential(base: float = 0.5, cap: float = 300.0, *, factor: float = 2.0) -> Backoff:
    """Exponential backoff: base, base*2, base*4, ... never more than ``cap`` seconds."""
    if base < 0 or cap < 0:
        raise ValueError(f"exponential backoff needs base >= 0 and cap >= 0, got {base}, {cap}")
    if factor < 1:
        raise ValueError(f"exponential backoff needs factor >= 1, got {factor}")
    return Backoff(base=base, cap=cap, factor=factor)


RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class Retry:
    """``Retry(max_attempts, backoff=exponential(base, cap), jitter="full", retry_on=...)``.

    ``max_attempts`` counts *starts*, including starts cut short by a crash of the
    process, so a poison task always ends in the dead-letter table. ``jitter="full"``
    waits a uniform random time in [0, backoff] (spreads a thundering herd of retries);
    ``"none"`` waits exactly the backoff. ``retry_on`` is an exception type, a tuple of
    them or a predicate; other errors dead-letter at once.
    """

    max_attempts: int = 3
    backoff: Backoff = Backoff(base=0.5, cap=300.0)
    jitter: Literal["full", "none"] = "full"
    retry_on: RetryOn = Exception

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"Retry: max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.jitter not in ("full", "none"):
            raise ValueError(f"Retry: jitter must be 'full' or 'none', got {self.jitter!r}")
        if not callable(self.backoff):
            raise TypeError(
                f"Retry: backoff must be callable (see exponential()), got {self.backoff!r}"
            )
        on = self.retry_on
        if not (
            (isinstance(on, type) and issubclass(on, BaseException))
            or (isinstance(on, tuple) and all(isinstance(t, type) for t in on))
            or (callable(on) and not isinstance(on, type))
        ):
            raise TypeError(
                f"Retry: retry_on must be an exception type, a tuple of them or a predicate, "
                f"got {on!r}"
            )

    def should_retry(
        self, exc: BaseException, attempts: int, max_attempts: int | None = None
    ) -> bool:
        """True if a task that failed with ``exc`` on start number ``attempts`` runs again.

        ``max_attempts`` overrides the policy's (the budget stored with the task wins).
        """
        limit = self.max_attempts if max_attempts is None else max_attempts
        if attempts >= limit or not isinstance(exc, Exception):
            return False
        on = self.retry_on
        if isinstance(on, (type, tuple)):
            return isinstance(exc, on)
        return bool(on(exc))

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed start number ``attempts`` (>= 1)."""
        ceiling = self.backoff(attempts)
        if self.jitter == "none":
            return ceiling
        return (rng or random).uniform(0.0, ceiling)
