"""Real file-system conditions for the durable store: a disk that fills up and a directory
that is read-only, each made real inside a private mount namespace (see tests/mounts.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from corral.store import SQLiteStore, StoreError
from mounts import need_mount_namespaces, read_only, run_in_namespace, tmpfs
from storehelpers import NOW, new_task

DISK_CHILD = str(Path(__file__).with_name("disk_child.py"))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_shutdown_on_a_full_disk_finishes_and_says_what_was_not_persisted(
    tmp_path: Path, backend: str
) -> None:
    need_mount_namespaces()
    disk = tmp_path / "disk"
    disk.mkdir()
    done = run_in_namespace(
        tmpfs(disk, "1m"),
        [sys.executable, DISK_CHILD, "full", str(disk / "tasks.db"), backend],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    full = next(line for line in lines if line.startswith("FULL "))
    assert int(full.split()[1]) > 0 and "database or disk is full" in full
    left = float(next(line for line in lines if line.startswith("LEFT ")).split()[1])
    assert left < 30  # it used to retry the store every second, for ever
    summary = [
        line for line in done.stderr.splitlines() if "closed after task store failures" in line
    ]
    assert len(summary) == 1, done.stderr[-3000:]
    assert "task 'disk.echo'" in summary[0] and "was never stored" in summary[0]
    assert "draining stopped with" in summary[0] and "they stay stored" in summary[0]


OWNER_CHILD = str(Path(__file__).with_name("owner_child.py"))


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "corral.tasks_cli", *args]


def seed_clean(db: Path, count: int = 3) -> None:
    """A database closed cleanly: no -wal, no -shm, one dead letter."""

    async def go() -> None:
        async with SQLiteStore(db) as store:
            await store.enqueue([new_task(args=f"[{n}]") for n in range(count)])
            (record, *_) = await store.claim("q", limit=1, now=NOW)
            await store.dead_letter(record.id, error="ValueError: bad", traceback="tb", now=NOW)

    anyio.run(go)
    assert not Path(f"{db}-wal").exists()


def test_a_healthy_database_in_a_read_only_directory_is_not_called_corrupt(
    tmp_path: Path,
) -> None:
    need_mount_namespaces()
    db = tmp_path / "tasks.db"
    seed_clean(db)
    opened = run_in_namespace(
        read_only(tmp_path), [sys.executable, DISK_CHILD, "open", str(db), "asyncio"]
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith("StoreError: cannot open task database"), opened.stdout
    assert f"its directory {tmp_path} is read-only" in opened.stdout
    assert "StoreCorrupt" not in opened.stdout and "not a usable" not in opened.stdout

    repair = run_in_namespace(read_only(tmp_path), cli("--db", str(db), "retry", "--all-dlq"))
    assert repair.returncode == 2 and "is read-only" in repair.stderr
    assert "not a usable" not in repair.stderr


def test_corral_tasks_inspects_a_read_only_directory(tmp_path: Path) -> None:
    need_mount_namespaces()
    db = tmp_path / "tasks.db"
    seed_clean(db)
    before = sorted(p.name for p in tmp_path.iterdir())
    stats = run_in_namespace(read_only(tmp_path), cli("--db", str(db), "--json", "stats"))
    assert stats.returncode == 0, stats.stderr
    [row] = json.loads(stats.stdout)
    assert (row["queue"], row["pending"], row["dead"]) == ("q", 2, 1)
    listing = run_in_namespace(read_only(tmp_path), cli("--db", str(db), "--json", "list"))
    assert listing.returncode == 0 and len(json.loads(listing.stdout)) == 2
    dlq = run_in_namespace(read_only(tmp_path), cli("--db", str(db), "--json", "dlq"))
    [dead] = json.loads(dlq.stdout)
    assert dlq.returncode == 1 and dead["last_error"] == "ValueError: bad"
    show = run_in_namespace(read_only(tmp_path), cli("--db", str(db), "show", dead["id"]))
    assert show.returncode == 0 and "last_error: ValueError: bad" in show.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing was written


@pytest.mark.parametrize("shm", ["kept", "deleted"])
def test_read_only_inspection_after_a_crash_reads_the_wal_when_it_can(
    tmp_path: Path, shm: str
) -> None:
    need_mount_namespaces()
    db = tmp_path / "tasks.db"
    child = subprocess.Popen(
        [sys.executable, OWNER_CHILD, "acked", str(db), "5", "asyncio"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked = []
    for line in child.stdout:
        if line.startswith("ACK "):
            acked.append(line.split()[1])
        if line.startswith("READY"):
            break
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert len(acked) == 5 and Path(f"{db}-wal").stat().st_size > 0
    if shm == "deleted":
        Path(f"{db}-shm").unlink()

    listing = run_in_namespace(read_only(tmp_path), cli("--db", str(db), "--json", "list"))
    assert listing.returncode == 0, listing.stderr
    shown = {r["id"] for r in json.loads(listing.stdout)}
    if shm == "kept":  # the WAL is read through the existing -shm: every acknowledged task
        assert shown == set(acked) and not listing.stderr
    else:  # the WAL cannot be read: said, and the last checkpoint is shown
        assert shown == set() and "changes still in tasks.db-wal are not shown" in listing.stderr


@pytest.mark.anyio
async def test_read_only_store_reads_a_live_database_and_refuses_writes(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with SQLiteStore(db) as writer:
        await writer.enqueue([new_task(), new_task()])
        async with SQLiteStore(db, read_only=True) as reader:
            assert [s.pending for s in await reader.stats()] == [2]
            assert len(await reader.list_tasks()) == 2 and await reader.next_due("q") == NOW
            with pytest.raises(StoreError, match="open read-only"):
                await reader.claim("q", limit=1, now=NOW)
            with pytest.raises(StoreError, match="open read-only"):
                reader.enqueue_nowait([new_task()])
    with pytest.raises(StoreError, match="not open"):
        await reader.stats()
    with pytest.raises(StoreError, match="no task database"):
        async with SQLiteStore(tmp_path / "missing.db", read_only=True):
            pass  # pragma: no cover - refused
    assert not (tmp_path / "missing.db").exists()
