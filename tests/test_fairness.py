"""Fairness: after a burst of CPU-only tasks, no other task waits long for the event loop.

A ticker task sleeps 1 ms in a loop and records the longest gap between its wake-ups
while 4 workers run a burst. The runtime gives the loop back by time (2 ms per
worker turn), so the gap stays near a few turns whatever the task duration. The bound
here is generous for a loaded 2-core machine; ``benchmarks/fairness.py`` prints the
figures, measured by the same code (``tests/fairnesshelpers.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from fairnesshelpers import group_burst, longest_gap, queue_burst

pytestmark = pytest.mark.anyio

BOUND = 0.1  # CPU seconds; the design gives about 2 x 4 workers x 2 ms


CASES = [
    pytest.param(queue_burst, 40_000, 0.000005, id="queue-5us"),
    pytest.param(queue_burst, 1_000, 0.0005, id="queue-500us"),
    pytest.param(group_burst, 40_000, 0.000005, id="group-5us"),
    pytest.param(group_burst, 1_000, 0.0005, id="group-500us"),
]


@pytest.mark.parametrize(("burst", "count", "seconds"), CASES)
async def test_a_burst_never_holds_the_loop_long(burst: Any, count: int, seconds: float) -> None:
    gap = await longest_gap(lambda submitted: burst(submitted, count, seconds))
    assert gap < BOUND, f"the ticker waited {gap * 1000:.0f} ms for the event loop"
