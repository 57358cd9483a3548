"""SQLiteStore against real files: transitions, group commit, idempotency, files and schema."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from corral.store import SQLiteStore, StoreCorrupt, StoreError
from corral.store._schema import MIGRATIONS, SCHEMA_VERSION
from storehelpers import NOW, new_task

pytestmark = pytest.mark.anyio


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_concurrent_submits_share_commits(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "tasks.db") as store:

        async def submitter() -> None:
            for _ in range(20):
                await store.enqueue([new_task()])

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(submitter)
        commits = store.metrics_snapshot().commits["q"]
        stats = await store.stats()
    assert stats[0].pending == 1000
    # Group commit: 1,000 acknowledged rows in far fewer transactions (one fsync each).
    assert commits.count < 1000 / 5


async def test_one_failing_write_does_not_undo_its_batch(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "tasks.db") as store:
        clash = new_task()
        await store.enqueue([clash])
        good = new_task()
        bad_op = store.enqueue_nowait([clash])  # same id: IntegrityError in the same batch
        good_op = store.enqueue_nowait([good])
        with pytest.raises(StoreError, match="UNIQUE"):
            await bad_op
        assert (await good_op)[0].created
        assert {r.id for r in await store.list_tasks()} == {clash.id, good.id}
        assert store.metrics_snapshot().pending == {"q": 2}  # the failed write never counted


async def test_files_are_private_while_open(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with SQLiteStore(db) as store:
        await store.enqueue([new_task()])
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists(), path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    before = digest(db)
    with pytest.raises(StoreCorrupt, match="did not create"):
        async with SQLiteStore(db):
            pass
    assert digest(db) == before


async def test_other_application_with_user_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE things (id INTEGER)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    before = digest(db)
    with pytest.raises(StoreCorrupt, match="another application"):
        async with SQLiteStore(db):
            pass
    assert digest(db) == before


async def test_non_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("my notes, not a database\n" * 100)
    before = digest(db)
    with pytest.raises(StoreCorrupt, match="not a SQLite database"):
        async with SQLiteStore(db):
            pass
    assert digest(db) == before
    directory = tmp_path / "adir"
    directory.mkdir()
    with pytest.raises(StoreCorrupt, match="not a regular file"):
        async with SQLiteStore(directory):
            pass


async def test_damaged_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with SQLiteStore(db) as store:
        await store.enqueue([new_task(args="[" + ",".join(["1"] * 500) + "]") for _ in range(50)])
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : 4 * page] = b"\xa5" * (2 * page)  # scribble over b-tree pages
    db.write_bytes(bytes(data))
    before = digest(db)
    with pytest.raises(StoreCorrupt):
        async with SQLiteStore(db):
            pass
    assert digest(db) == before


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with SQLiteStore(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="newer"):
        async with SQLiteStore(db):
            pass


async def test_forward_migration_keeps_rows(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO tasks (id, queue, name, payload, max_attempts, not_before, created_at,"
        " updated_at, idempotency_key, state)"
        " VALUES ('old', 'q', 'jobs.echo', '{\"args\":[]}', 3, 0, 0, 0, 'k1', 'pending')"
    )
    conn.close()
    async with SQLiteStore(db) as store:
        (rec,) = await store.claim("q", limit=5, now=NOW)
        assert rec.id == "old"
        await store.complete("old", result="1", now=NOW)  # uses the v2 'done' table
        (dup,) = await store.enqueue([new_task(key="k1")])
        assert (dup.created, dup.state) == (False, "done")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_disk_full_acknowledges_only_what_was_stored(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    acknowledged: list[str] = []
    failures: list[StoreError] = []
    big = "[" + ",".join(['"' + "x" * 200 + '"'] * 20) + "]"
    async with SQLiteStore(db, max_bytes=256 * 1024) as store:

        async def submitter() -> None:
            for _ in range(40):
                task = new_task(args=big)
                try:
                    await store.enqueue([task])
                except StoreError as exc:
                    failures.append(exc)
                else:
                    acknowledged.append(task.id)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(submitter)
        gauge = store.metrics_snapshot().pending["q"]
    assert failures and acknowledged
    assert "full" in str(failures[0])
    async with SQLiteStore(db) as store:
        stored = {r.id for r in await store.list_tasks(limit=10_000)}
        assert store.metrics_snapshot().pending == {"q": len(stored)}  # counted at open
    assert set(acknowledged) <= stored  # nothing acknowledged that was not stored
    assert gauge == len(stored)  # and the gauge followed only what was committed


def test_read_only_directory_gives_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    tmp_path.chmod(0o755)
    script = (
        "import os, sys, anyio, anyio._backends._asyncio\n"
        "from corral.store import SQLiteStore, StoreError\n"
        "if os.geteuid() == 0:  # root ignores permissions: drop to nobody once imported\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "async def main():\n"
        "    async with SQLiteStore(sys.argv[1]):\n"
        "        pass\n"
        "try:\n"
        "    anyio.run(main)\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(locked / "tasks.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot create task database" in proc.stdout and "Permission denied" in proc.stdout
    assert not (locked / "tasks.db").exists()


async def test_store_must_be_open_and_opened_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "tasks.db")
    with pytest.raises(StoreError, match="not open"):
        await store.stats()
    async with store:
        with pytest.raises(StoreError, match="already open"):
            await store.__aenter__()
    with pytest.raises(StoreError, match="not open"):
        store.enqueue_nowait([new_task()])


def test_metrics_snapshot_of_a_closed_store_is_empty(tmp_path: Path) -> None:
    gone = SQLiteStore(tmp_path / "missing.db").metrics_snapshot()
    assert gone.pending == {} and gone.dead == {} and not (tmp_path / "missing.db").exists()


async def test_a_cancelled_waiter_leaves_the_other_waiters_alone(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "tasks.db") as store:
        task = new_task()
        write = store.enqueue_nowait([task])
        outcomes: list[object] = []

        async def patient() -> None:
            outcomes.append((await write)[0].id)

        async def impatient() -> None:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await write
            outcomes.append("gave up")

        async with anyio.create_task_group() as tg:
            tg.start_soon(impatient)
            tg.start_soon(patient)
        assert sorted(map(str, outcomes)) == sorted(["gave up", task.id])
        assert [r.id for r in await store.list_tasks()] == [task.id]  # stored regardless
