"""kill -9 of real processes: acknowledged tasks survive, poison tasks end in the DLQ.

The child (tests/durable_child.py) submits tasks with an idempotency key and prints
"ACK n" only after ``await q.submit`` returned; the parent SIGKILLs it at a random moment
(starting up, submitting, committing, running tasks). A final run replays what is left.
Each backend runs 10 kill cycles (20 in all); ``benchmarks/durable_chaos.py`` runs 100.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = str(Path(__file__).with_name("durable_child.py"))
CYCLES = 10


def run_child(
    *args: str, kill_after: float | None = None, kill_at_ack: int | None = None
) -> tuple[int, str]:
    """Run the child; SIGKILL it after ``kill_after`` seconds or right after its
    ``kill_at_ack``-th acknowledgement (the tightest window: the next commit in flight)."""
    proc = subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    seen: list[str] = []
    if kill_at_ack is not None:
        for line in proc.stdout:
            seen.append(line)
            if len(seen) >= kill_at_ack:
                proc.send_signal(signal.SIGKILL)
                break
    elif kill_after is not None:
        time.sleep(kill_after)  # the moment of the crash; not an assertion
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"child failed ({proc.returncode}):\n{err}")
    return proc.returncode, "".join(seen) + out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_kill_9_never_loses_an_acknowledged_task(tmp_path: Path, backend: str) -> None:
    db, log = str(tmp_path / "tasks.db"), str(tmp_path / "executed.log")
    rng = random.Random(f"{backend}-kill")
    acknowledged: set[int] = set()
    kills = 0
    for cycle in range(CYCLES):
        first = cycle * 1000
        args = ("submit", db, log, str(first), "400", backend)
        if cycle % 2:  # at a random moment: start-up, submitting, committing, running
            code, out = run_child(*args, kill_after=rng.uniform(0.3, 0.9))
        else:  # right after an acknowledgement
            code, out = run_child(*args, kill_at_ack=rng.randint(1, 300))
        kills += code == -signal.SIGKILL
        acknowledged |= {
            int(line.split()[1]) for line in out.splitlines() if line.startswith("ACK")
        }
    assert kills >= CYCLES // 2, "most cycles should be cut short by the kill"
    assert acknowledged, "some submits should be acknowledged before the kills"
    code, _ = run_child("drain", db, log, backend)
    assert code == 0

    executed = {int(line) for line in Path(log).read_text().split()}
    lost = acknowledged - executed
    assert not lost, f"{len(lost)} acknowledged task(s) never ran: {sorted(lost)[:10]}"
    conn = sqlite3.connect(db)
    try:
        pending = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        both = conn.execute(
            "SELECT count(*) FROM done JOIN tasks ON done.idempotency_key = tasks.idempotency_key"
        ).fetchone()[0]
        done_keys = {int(r[0]) for r in conn.execute("SELECT idempotency_key FROM done")}
    finally:
        conn.close()
    assert (pending, dead, both) == (0, 0, 0)
    assert acknowledged <= done_keys  # every acknowledged task finished and was recorded


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_task_that_kills_its_process_ends_in_the_dead_letter_table(
    tmp_path: Path, backend: str
) -> None:
    db = str(tmp_path / "tasks.db")
    codes = [run_child("poison", db, backend, "submit")[0]]
    codes += [run_child("poison", db, backend)[0] for _ in range(3)]
    # Starts 1..3 each kill the process; the 4th run finds the budget spent (attempts are
    # persisted before each start) and dead-letters the task instead of starting it again.
    assert codes == [-signal.SIGKILL] * 3 + [0]
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, attempts, last_error FROM dead_letters").fetchall()
        live = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()
    assert live == 0
    ((name, attempts, error),) = rows
    assert (name, attempts) == ("crash.poison", 3)
    assert "process exited while the task was running" in error
