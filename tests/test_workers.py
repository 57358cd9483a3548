"""Forked checker processes: results for every file, a bounded window in flight, a dead
child costing only its files, and the spawn-pool fallback where fork is not safe."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from corral.lint_rules import runner, workers
from corral.lint_rules.cache import ResultCache
from corral.lint_rules.workers import ForkPool, fork_safe
from linthelpers import ruleset


def _size(shown: str, data: bytes) -> tuple[str, int, int]:
    return shown, len(data), os.getpid()


def test_every_file_comes_back_from_the_children() -> None:
    with ForkPool(2, _size, lambda shown: ("died", shown)) as pool:
        for i in range(300):
            pool.submit(i, (f"f{i}.py", b"x" * (i * 97)), i * 97)
        done = dict(pool.drain())
    assert sorted(done) == list(range(300))
    assert all(done[i][:2] == (f"f{i}.py", i * 97) for i in done)
    assert os.getpid() not in {pid for _, _, pid in done.values()}
    assert len({pid for _, _, pid in done.values()}) == 2  # a share for each child


def test_the_window_in_flight_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "WINDOW_FILES", 4)
    monkeypatch.setattr(workers, "WINDOW_BYTES", 10_000)
    peak_files = peak_bytes = 0
    with ForkPool(2, _size, lambda shown: None) as pool:
        for i in range(200):
            pool.submit(i, ("f.py", b"y" * 3_000), 3_000)
            for child in pool.children:
                peak_files = max(peak_files, len(child.inflight))
                peak_bytes = max(peak_bytes, child.inflight_bytes)
        assert len(pool.drain()) == 200
    assert peak_files <= 4
    assert peak_bytes <= 10_000 + 3_000  # one file may cross the line, never more


def _crash_on(name: str):  # type: ignore[no-untyped-def]
    parent = os.getpid()

    def check(shown: str, data: bytes) -> str:
        if shown == name and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return shown

    return check


def test_a_dead_child_costs_only_its_file() -> None:
    with ForkPool(2, _crash_on("bad.py"), lambda shown: f"died: {shown}") as pool:
        names = [f"ok{i}.py" for i in range(20)] + ["bad.py"] + [f"late{i}.py" for i in range(20)]
        for name in names:
            pool.submit(name, (name, b"data"), 4)
        done = dict(pool.drain())
    assert done.pop("bad.py") == "died: bad.py"
    assert done == {name: name for name in names if name != "bad.py"}


def _fails(shown: str, data: bytes) -> None:
    raise ValueError("a bug")


def test_a_checker_bug_is_raised_in_the_parent_not_hidden() -> None:
    with ForkPool(1, _fails, lambda shown: None) as pool:
        pool.submit(1, ("f.py", b""), 0)
        with pytest.raises(RuntimeError, match="ValueError: a bug"):
            pool.drain()


def test_fork_is_not_used_while_another_thread_runs() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)  # corral: allow[CRL101] reason="the test's point"
    thread.start()
    try:
        assert not fork_safe()
    finally:
        stop.set()
        thread.join()


def test_where_fork_is_not_safe_a_spawn_pool_gives_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    padding = b"x = 1\n" * 20_000  # enough work to start worker processes
    files = []
    for i in range(4):
        (tmp_path / f"m{i}.py").write_bytes(b"import asyncio\nasyncio.create_task(c())\n" + padding)
        files.append((f"m{i}.py", tmp_path / f"m{i}.py"))
    rules = ruleset()
    inline = runner.check_files(files, rules, ResultCache(None, "k"), jobs=1).findings
    monkeypatch.setattr(workers, "fork_safe", lambda: False)
    spawned = runner.check_files(files, rules, ResultCache(None, "k"), jobs=2).findings
    assert [f.code for f in inline] == ["CRL201"] * 4
    assert spawned == inline
