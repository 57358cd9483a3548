"""When a submitted task may start: ``delay=`` seconds or ``not_before=`` an aware datetime.

Shared by the in-memory queue (which waits on its own clock) and the durable path (which
stores an epoch time), so both refuse the same bad input with the same message.
"""

from __future__ import annotations

import math
from datetime import datetime

__all__ = ["MAX_PRIORITY", "check_priority", "delay_seconds"]

#: ``priority=`` takes 0..MAX_PRIORITY; higher is claimed first, 0 is the default.
MAX_PRIORITY = 9


def delay_seconds(
    where: str, delay: float | None, not_before: datetime | None, *, now: float
) -> float | None:
    """Seconds from ``now`` (wall-clock epoch) until the task is due; None when not delayed.

    A time in the past is due at once (0.0). A naive datetime is refused: its meaning
    depends on the machine's zone setting, which differs across a fleet.
    """
    if delay is None and not_before is None:
        return None
    if delay is not None and not_before is not None:
        raise TypeError(f"{where}: pass delay= or not_before=, not both")
    if delay is not None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ValueError(
                f"{where}: delay must be a finite number of seconds >= 0, got {delay!r}"
            )
        return float(delay)
    if not isinstance(not_before, datetime):
        raise TypeError(f"{where}: not_before must be a datetime, got {type(not_before).__name__}")
    if not_before.tzinfo is None or not_before.utcoffset() is None:
        raise ValueError(
            f"{where}: not_before={not_before.isoformat()} is a naive datetime; give it a "
            "time zone (datetime.now(timezone.utc) + timedelta(...), or .replace(tzinfo=...))"
        )
    return max(0.0, not_before.timestamp() - now)


def check_priority(where: str, priority: int) -> int:
    """``priority`` itself, or a ValueError/TypeError naming the accepted range."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(
            f"{where}: priority must be an int in 0..{MAX_PRIORITY}, got {type(priority).__name__}"
        )
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(
            f"{where}: priority must be in 0..{MAX_PRIORITY} (higher runs first), got {priority}"
        )
    return priority
