"""Chaos run for durable queues: SIGKILL a submitting, running process over and over.

    python benchmarks/durable_chaos.py [--cycles 100] [--backend asyncio|trio]

Each cycle starts tests/durable_child.py, which submits tasks (printing "ACK n" once
``await q.submit`` returned) while its workers run them, and kills it with SIGKILL either
after a random delay or right after a random acknowledgement. A last run replays what is
left. Prints how many acknowledged tasks never ran (lost=0 is the contract), how many ran
more than once (allowed: at least once), and what is left in the database.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = str(Path(__file__).resolve().parent.parent / "tests" / "durable_child.py")


def run_child(args: list[str], rng: random.Random) -> tuple[int, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    if args[0] == "submit":
        if rng.random() < 0.5:
            target = rng.randint(1, 300)
            for line in proc.stdout:
                lines.append(line)
                if len(lines) >= target:
                    break
        else:
            time.sleep(rng.uniform(0.2, 1.0))
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise SystemExit(f"child failed with {proc.returncode}:\n{err}")
    return proc.returncode, lines + out.splitlines()


def main(cycles: int, backend: str, seed: int) -> int:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="corral-chaos-") as tmp:
        db, log = str(Path(tmp) / "tasks.db"), str(Path(tmp) / "executed.log")
        acknowledged: set[int] = set()
        kills = 0
        started = time.perf_counter()
        for cycle in range(cycles):
            code, lines = run_child(["submit", db, log, str(cycle * 1000), "400", backend], rng)
            kills += code == -signal.SIGKILL
            acknowledged |= {int(x.split()[1]) for x in lines if x.startswith("ACK")}
        run_child(["drain", db, log, backend], rng)
        runs = collections.Counter(int(x) for x in Path(log).read_text().split())
        conn = sqlite3.connect(db)
        left = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        conn.close()
    lost = acknowledged - set(runs)
    duplicates = sum(1 for n in acknowledged if runs[n] > 1)
    print(
        f"cycles={cycles} kills={kills} acknowledged={len(acknowledged)} "
        f"executed={len(runs)} lost={len(lost)} ran_twice_or_more={duplicates} "
        f"left_pending={left} dead={dead} ({time.perf_counter() - started:.0f}s, {backend})"
    )
    return 1 if lost or left else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    sys.exit(main(options.cycles, options.backend, options.seed))
