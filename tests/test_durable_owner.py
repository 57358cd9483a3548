"""One owner per (database, queue), and acknowledged tasks that vanish with the -wal file.

Real processes: an owner serving a queue, a second process opening the same file and
queue, SIGKILL of the owner; and a process killed with its acknowledged tasks still in
the WAL, which the test then deletes or truncates.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import corral
import pytest
from corral.store import SQLiteStore, StoreCorrupt, StoreError
from prometheus_client import CollectorRegistry

CHILD = str(Path(__file__).with_name("owner_child.py"))


def spawn(*args: str, hold: bool = False) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "OWNER_CHILD_HOLD"}
    if hold:
        env["OWNER_CHILD_HOLD"] = "1"
    return subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OWNER_CHILD_HOLD"}
    return subprocess.run(
        [sys.executable, CHILD, *args], capture_output=True, text=True, timeout=120, env=env
    )


def read_until_ready(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> list[str]:
    """The child's stdout lines up to READY (fails, with its stderr, if it never comes)."""
    assert proc.stdout is not None
    fd, buffer, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while b"READY\n" not in buffer:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"child gave no READY: {buffer!r}\n{err.decode()}")
        buffer += chunk
    return buffer.decode().splitlines()


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def starts(log: Path) -> list[tuple[int, int]]:
    return [
        (int(n), int(pid))
        for n, pid in (line.split() for line in log.read_text().split("\n") if line)
    ]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_second_process_is_refused_until_the_owner_dies(tmp_path: Path, backend: str) -> None:
    db, log = tmp_path / "tasks.db", tmp_path / "starts.log"
    owner = spawn("serve", str(db), str(log), "8", backend, hold=True)
    try:
        read_until_ready(owner)  # all 8 tasks are running in the owner
        second = run("serve", str(db), str(log), "0", backend)
        assert second.returncode == 3, second.stderr
        assert f"queue 'owned' of {db} is already being served by process {owner.pid}" in (
            second.stderr
        )
        assert "Traceback" not in second.stderr
        assert sorted(starts(log)) == [(n, owner.pid) for n in range(8)]  # none ran twice

        listing = subprocess.run(
            [sys.executable, "-m", "corral.tasks_cli", "--db", str(db), "list", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr  # inspecting needs no ownership
        assert listing.stdout.count('"running"') == 8
    finally:
        kill_9(owner)  # the kernel drops the lock with the process

    third = run("serve", str(db), str(log), "0", backend)
    assert third.returncode == 0, third.stderr
    taken_over = [n for n, pid in starts(log) if pid != owner.pid]
    assert sorted(taken_over) == list(range(8))  # each interrupted task ran once more


def open_queue(db: Path, name: str) -> corral.TaskQueue:
    return corral.TaskQueue(
        name, workers=2, capacity=10, store=SQLiteStore(db), registry=CollectorRegistry()
    )


@pytest.mark.anyio
async def test_a_second_store_in_the_same_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with open_queue(db, "emails"):
        with pytest.raises(StoreError, match="already being served by this process"):
            async with open_queue(db, "emails"):
                pass  # pragma: no cover - refused
        async with open_queue(db, "invoices"):
            pass  # another queue of the same file has its own owner
        async with SQLiteStore(db) as inspector:
            assert await inspector.stats() == []  # inspection takes no lock
    async with open_queue(db, "emails"):
        pass  # released when the owner closed


def lost_wal_child(db: Path, backend: str, count: int = 40) -> list[str]:
    child = spawn("acked", str(db), str(count), backend)
    try:
        lines = read_until_ready(child)
    finally:
        kill_9(child)
    acked = [line.split()[1] for line in lines if line.startswith("ACK ")]
    assert len(acked) == count
    return acked


async def stored_ids(db: Path) -> set[str]:
    async with SQLiteStore(db) as store:
        return {r.id for r in await store.list_tasks(limit=1000)}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("damage", ["delete", "delete-with-shm", "truncate"])
def test_acknowledged_tasks_lost_with_the_wal_are_reported(
    tmp_path: Path, backend: str, damage: str
) -> None:
    db = tmp_path / "tasks.db"
    lost_wal_child(db, backend)
    wal = Path(f"{db}-wal")
    size = wal.stat().st_size
    assert size > 0  # the acknowledged tasks are only in the WAL (no checkpoint ran)
    if damage == "truncate":
        os.truncate(wal, size // 3)
    else:
        wal.unlink()
        if damage == "delete-with-shm":
            Path(f"{db}-shm").unlink()

    with pytest.raises(StoreCorrupt, match="has lost acknowledged tasks: queue 'owned'") as err:
        anyio.run(stored_ids, db, backend=backend)
    cli = subprocess.run(
        [sys.executable, "-m", "corral.tasks_cli", "--db", str(db), "stats"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 2 and "has lost acknowledged tasks" in cli.stderr

    # Accepting the loss, as the message says: delete the mark it names.
    lock = str(err.value).rsplit("delete ", 1)[1]
    assert lock.startswith(f"{db}-lock-")
    os.unlink(lock)
    anyio.run(stored_ids, db, backend=backend)


def test_an_intact_wal_after_kill_9_is_no_false_alarm(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    acked = lost_wal_child(db, "asyncio")
    assert anyio.run(stored_ids, db) == set(acked)


def test_a_database_created_anew_says_what_the_old_one_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "tasks.db"
    lost_wal_child(db, "asyncio", count=5)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink()
    caplog.set_level(logging.WARNING, logger="corral.store")
    assert anyio.run(stored_ids, db) == set()
    assert "was created anew, but queue 'owned' had tasks committed up to #5" in caplog.text
    caplog.clear()
    assert anyio.run(stored_ids, db) == set()  # said once: the new file has its own history
    assert not caplog.records
