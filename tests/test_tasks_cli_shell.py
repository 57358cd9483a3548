"""``corral tasks`` as a shell user meets it: --help, a missing extra, a closed pipe, stats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from corral.store import SQLiteStore
from corral.tasks_cli import main
from storehelpers import new_task


def corral_tasks(*args: str, prelude: str = "") -> subprocess.Popen[str]:
    """``corral tasks ARGS`` in a fresh interpreter (``prelude`` runs first)."""
    code = f"{prelude}\nimport sys\nfrom corral.lint_rules.cli import main\nsys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "tasks", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pending_tasks(db: Path, count: int) -> None:
    async def fill() -> None:
        async with SQLiteStore(db) as store:
            await store.enqueue([new_task("emails", not_before=0.0) for _ in range(count)])

    anyio.run(fill)


def test_help_names_both_stores(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--redis URL" in out and "--db PATH" in out and "corral[redis]" in out


def test_redis_without_the_extra_is_one_line_and_exit_2() -> None:
    # what an environment without the redis client looks like to `import redis`
    proc = corral_tasks(
        "--redis",
        "redis://127.0.0.1:1/0",
        "stats",
        prelude="import sys\nsys.modules['redis'] = None",
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert (
        err
        == "corral tasks: corral.RedisStore needs the redis client: pip install 'corral[redis]'\n"
    )
    assert out == ""


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path) -> None:
    """``corral tasks list | head -1``: the pipe closes before the listing is written."""
    db = tmp_path / "tasks.db"
    pending_tasks(db, 300)
    proc = corral_tasks("--db", str(db), "list", "--limit", "300")
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    assert err == ""
    assert proc.returncode == 128 + 13


def test_stats_says_which_finished_tasks_it_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "tasks.db"
    pending_tasks(db, 2)
    assert main(["--db", str(db), "stats"]) == 0
    header, row, note = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "QUEUE",
        "PENDING",
        "RUNNING",
        "DEAD",
        "KEPT_DONE",
        "CANCELLED",
        "OLDEST",
    ]
    assert row.split()[:5] == ["emails", "2", "0", "0", "0"]
    assert note.startswith("KEPT_DONE: finished tasks kept for their idempotency key;")
    assert "corral_tasks_completed_total" in note
