"""The task database's schema, its version (``PRAGMA user_version``) and forward migrations.

A database is only ever migrated forward, one step at a time, inside one transaction;
a file that is not ours (no marker, or tables we did not create) or that a newer
corral wrote is refused and left exactly as it was.
"""

from __future__ import annotations

import sqlite3

from .base import StoreCorrupt, StoreError

__all__ = [
    "APPLICATION",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLITE_CANTOPEN",
    "check_and_migrate",
    "primary_code",
]

APPLICATION = "corral-tasks"

_LIVE_COLUMNS = """
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    not_before REAL NOT NULL,
    idempotency_key TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    last_traceback TEXT
"""

#: MIGRATIONS[n] takes a database from user_version n-1 to n.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE corral_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"INSERT INTO corral_meta (key, value) VALUES ('application', '{APPLICATION}')",
        f"""CREATE TABLE tasks ({_LIVE_COLUMNS},
            state TEXT NOT NULL CHECK (state IN ('pending', 'running')))""",
        "CREATE INDEX tasks_due ON tasks (queue, state, not_before, seq)",
        """CREATE UNIQUE INDEX tasks_key ON tasks (queue, idempotency_key)
            WHERE idempotency_key IS NOT NULL""",
        f"CREATE TABLE dead_letters ({_LIVE_COLUMNS})",
        "CREATE INDEX dead_letters_queue ON dead_letters (queue, seq)",
        """CREATE INDEX dead_letters_key ON dead_letters (queue, idempotency_key)
            WHERE idempotency_key IS NOT NULL""",
    ),
    # v2: finished tasks with an idempotency key are remembered (with their result) for
    # a retention period, so a duplicate submit after success returns the first result.
    2: (
        f"CREATE TABLE done ({_LIVE_COLUMNS}, result TEXT)",
        "CREATE INDEX done_key ON done (queue, idempotency_key)",
        "CREATE INDEX done_finished ON done (updated_at)",
    ),
    # v3: cancel by id. A cancelled task leaves the live table for one of its own (kept for
    # inspection, never claimed, never retried); a running task carries the request until
    # its attempt ends in the process that runs it.
    3: (
        f"CREATE TABLE cancelled ({_LIVE_COLUMNS})",
        "CREATE INDEX cancelled_queue ON cancelled (queue, seq)",
        "CREATE INDEX cancelled_finished ON cancelled (updated_at)",
        "ALTER TABLE tasks ADD COLUMN cancel_requested REAL",
    ),
}

SCHEMA_VERSION = max(MIGRATIONS)


#: SQLite result codes that mean the bytes are not a (sound) database. Anything else
#: (cannot open, read-only, I/O error, busy, full) is a condition of the place the file
#: is in, not of the file: StoreError, never StoreCorrupt.
_DAMAGED = frozenset((11, 24, 26))  # SQLITE_CORRUPT, SQLITE_FORMAT, SQLITE_NOTADB
SQLITE_CANTOPEN = 14


def primary_code(exc: BaseException | None) -> int | None:
    """The primary SQLite result code of an sqlite3 error (extended codes folded)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if not isinstance(code, int) else code & 0xFF


def check_and_migrate(
    conn: sqlite3.Connection, path: str, *, target: int = SCHEMA_VERSION, read_only: bool = False
) -> int:
    """Verify the file is a corral task database (or empty) and migrate it to ``target``.

    Returns the version found before migrating. Raises :class:`StoreCorrupt` for a
    foreign, damaged or newer database; nothing is written in that case. With
    ``read_only`` nothing is ever written: a database that needs migrating is a
    :class:`StoreError` saying so.
    """
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if version == 0 and tables:
            raise StoreCorrupt(
                f"{path} is a SQLite database that corral did not create "
                f"(tables: {', '.join(sorted(tables)[:5])}); refusing to touch it"
            )
        if version > 0:
            marker = None
            if "corral_meta" in tables:
                row = conn.execute(
                    "SELECT value FROM corral_meta WHERE key = 'application'"
                ).fetchone()
                marker = row[0] if row else None
            if marker != APPLICATION:
                raise StoreCorrupt(
                    f"{path} is a SQLite database of another application "
                    f"(user_version {version}, no corral marker); refusing to touch it"
                )
            if version > SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"{path} has task schema version {version}, newer than this corral "
                    f"understands ({SCHEMA_VERSION}); upgrade corral to open it"
                )
            problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise StoreCorrupt(f"{path} is damaged: {problem}")
    except sqlite3.DatabaseError as exc:
        if primary_code(exc) in _DAMAGED:
            raise StoreCorrupt(f"{path} is not a usable SQLite database: {exc}") from exc
        raise StoreError(f"cannot read task database {path}: {exc}") from exc
    if read_only:
        if version == 0:
            raise StoreError(f"{path} is an empty database: there is nothing to inspect yet")
        if version < target:
            raise StoreError(
                f"{path} has task schema version {version}; open it once with write access "
                f"to migrate it to version {target} before inspecting it read-only"
            )
        return version
    while True:
        # Re-read under the write lock: another process may have migrated meanwhile.
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current >= target:
                conn.execute("COMMIT")
                return version
            for statement in MIGRATIONS[current + 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
