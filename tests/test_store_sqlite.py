"""SQLiteStore against real files: transitions, group commit, idempotency, files and schema."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest
from corral.store import NewTask, SQLiteStore, StoreCorrupt, StoreError
from corral.store._schema import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

NOW = 1_000_000.0


def new_task(
    queue: str = "q",
    *,
    key: str | None = None,
    not_before: float = NOW,
    max_attempts: int = 3,
    args: str = "[1]",
) -> NewTask:
    return NewTask(
        id=uuid.uuid4().hex,
        queue=queue,
        name="jobs.echo",
        payload=f'{{"args":{args},"kwargs":{{}}}}',
        max_attempts=max_attempts,
        not_before=not_before,
        created_at=NOW,
        idempotency_key=key,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_enqueue_claim_complete_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with SQLiteStore(db) as store:
        task = new_task(args='[1, "two"]')
        (outcome,) = await store.enqueue([task])
        assert outcome.created and outcome.id == task.id
        (claimed,) = await store.claim("q", limit=10, now=NOW)
        assert (claimed.id, claimed.state, claimed.attempts) == (task.id, "running", 1)
        assert claimed.args == [1, "two"] and claimed.kwargs == {}
        assert await store.claim("q", limit=10, now=NOW) == []
        await store.complete(task.id, result="42", now=NOW + 1)
        assert await store.get(task.id) is None  # no key: nothing kept after success
        assert await store.list_tasks() == []


async def test_claim_persists_attempts_and_keeps_fifo_order(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    tasks = [new_task() for _ in range(5)]
    async with SQLiteStore(db) as store:
        await store.enqueue(tasks)
        first = await store.claim("q", limit=2, now=NOW)
        assert [r.id for r in first] == [t.id for t in tasks[:2]]
    async with SQLiteStore(db) as store:  # a new process would see the same
        running = await store.list_tasks(state="running")
        assert {r.id: r.attempts for r in running} == {t.id: 1 for t in tasks[:2]}
        rest = await store.claim("q", limit=10, now=NOW)
        assert [r.id for r in rest] == [t.id for t in tasks[2:]]


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


async def test_retry_not_before_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    task = new_task()
    async with SQLiteStore(db) as store:
        await store.enqueue([task])
        await store.claim("q", limit=1, now=NOW)
        await store.retry_later(task.id, not_before=NOW + 30, error="E: x", traceback="tb", now=NOW)
    async with SQLiteStore(db) as store:
        assert await store.next_due("q") == NOW + 30
        assert await store.claim("q", limit=1, now=NOW + 29.9) == []  # not hastened
        (again,) = await store.claim("q", limit=1, now=NOW + 30)  # nor lost
        assert (again.attempts, again.last_error, again.last_traceback) == (2, "E: x", "tb")


async def test_dead_letter_requeue_and_purge(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "tasks.db") as store:
        a, b = new_task(), new_task(queue="other")
        await store.enqueue([a, b])
        for queue in ("q", "other"):
            (rec,) = await store.claim(queue, limit=1, now=NOW)
            await store.dead_letter(rec.id, error="ValueError: bad", traceback="tb", now=NOW + 1)
        dead = await store.list_dead()
        assert {r.id for r in dead} == {a.id, b.id}
        assert all(r.state == "dead" and r.attempts == 1 for r in dead)
        shown = await store.get(a.id)
        assert shown is not None and shown.last_error == "ValueError: bad"
        assert await store.requeue_dead([a.id, "missing"], now=NOW + 2) == [a.id]
        (back,) = await store.list_tasks(queue="q")
        assert (back.state, back.attempts) == ("pending", 0)
        assert await store.purge_dead(queue="q") == 0
        assert await store.purge_dead() == 1
        assert await store.list_dead() == []
        assert await store.requeue_dead(None, now=NOW) == []


async def test_recover_requeues_or_dead_letters_interrupted_starts(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    fresh, last = new_task(max_attempts=3), new_task(max_attempts=1)
    async with SQLiteStore(db) as store:
        await store.enqueue([fresh, last])
        await store.claim("q", limit=2, now=NOW)  # then the process "dies"
    async with SQLiteStore(db) as store:
        report = await store.recover("q", now=NOW + 5)
        assert report.requeued == [fresh.id] and report.dead == [last.id]
        dead = await store.get(last.id)
        assert dead is not None and dead.state == "dead"
        assert dead.last_error is not None and "process exited" in dead.last_error
        pending = await store.get(fresh.id)
        assert pending is not None and (pending.state, pending.attempts) == ("pending", 1)


async def test_idempotency_key_returns_existing_task_in_every_state(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "tasks.db", keep_done=60) as store:
        first = new_task(key="order-42")
        dup = await store.enqueue([first, new_task(key="order-42")])
        assert [d.created for d in dup] == [True, False]
        assert dup[1].id == first.id and dup[1].state == "pending"
        assert (await store.enqueue([new_task(queue="other", key="order-42")]))[0].created

        await store.claim("q", limit=1, now=NOW)
        (running,) = await store.enqueue([new_task(key="order-42")])
        assert (running.created, running.state) == (False, "running")

        await store.complete(first.id, result='{"ok":true}', now=NOW + 1)
        (done,) = await store.enqueue([new_task(key="order-42")])
        assert (done.created, done.state, done.id) == (False, "done", first.id)
        assert done.record is not None and done.record.result == '{"ok":true}'

        assert await store.purge_done(older_than=NOW + 2) == 1
        (again,) = await store.enqueue([new_task(key="order-42")])
        assert again.created  # retention over: the key is free again

        (rec,) = await store.claim("q", limit=1, now=NOW)
        await store.dead_letter(rec.id, error="boom", traceback="", now=NOW)
        (dead,) = await store.enqueue([new_task(key="order-42")])
        assert (dead.created, dead.state, dead.id) == (False, "dead", rec.id)


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


async def test_metrics_snapshot_counts_pending_and_dead(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "tasks.db") as store:
        await store.enqueue([new_task(), new_task(), new_task(queue="b")])
        (rec,) = await store.claim("b", limit=1, now=NOW)
        await store.dead_letter(rec.id, error="x", traceback="", now=NOW)
        snap = store.metrics_snapshot()
        assert snap.pending == {"q": 2}
        assert snap.dead == {"b": 1}
        assert snap.commits["q"].count >= 1
        assert await store.requeue_dead(None, now=NOW) == [rec.id]
        assert store.metrics_snapshot().pending == {"q": 2, "b": 1}
        (rec,) = await store.claim("b", limit=1, now=NOW)
        await store.dead_letter(rec.id, error="x", traceback="", now=NOW)
        assert await store.purge_dead() == 1
        (done,) = await store.claim("q", limit=1, now=NOW)
        await store.complete(done.id, result=None, now=NOW)
        snap = store.metrics_snapshot()
        assert (snap.pending, snap.dead) == ({"q": 1}, {})
    gone = SQLiteStore(tmp_path / "missing.db").metrics_snapshot()
    assert gone.pending == {} and gone.dead == {}
