"""pytest plugin: run every test under corral.guard (``pytest --corral-guard``).

Registered through the ``pytest11`` entry point, so pytest loads this module in every
project that installs corral; without ``--corral-guard`` (or ``corral_guard = true`` in
the ini options) it only declares its options: nothing is imported, patched or reported.

With it, each test runs under ``corral.guard.install("raise", third_party_mode="count")``:
raw concurrency started by the project's own code fails the test with the call site, and
raw concurrency started by installed libraries is counted. After each test it reports the
work the test leaked: asyncio or trio tasks still pending, threads it started that are
still alive, corral queues it opened and never closed (as ``CorralLeakWarning``).
``--corral-guard=report`` only counts, prints a table of raw spawns by package and site at
the end and writes a JSON report (``--corral-guard-report PATH``, default
``corral-guard.json``) that ``corral audit --guard-report PATH`` shows. This module imports
``corral.guard`` only, never the linter.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .guard import Guard, RawSpawn

__all__ = ["REPORT_FORMAT", "CorralLeakWarning"]

REPORT_FORMAT = "corral-guard-report"
_DEFAULT_REPORT = "corral-guard.json"
_MODES = ("enforce", "report")
_THREAD_GRACE = 0.5  # seconds a finishing thread gets before it counts as leaked
_SHOWN_TESTS = 5


class CorralLeakWarning(pytest.PytestWarning):
    """A test left work running: a pending task, a live thread or an open corral queue."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("corral", "corral run-time guard")
    group.addoption(
        "--corral-guard",
        nargs="?",
        const="enforce",
        default=None,
        choices=_MODES,
        dest="corral_guard",
        help="fail tests whose own code starts raw concurrency (enforce, the default), "
        "or only report raw spawns by package and site (--corral-guard=report)",
    )
    group.addoption(
        "--corral-guard-report",
        default=None,
        metavar="PATH",
        dest="corral_guard_report",
        help=f"write the guard's JSON report here (report mode default: {_DEFAULT_REPORT})",
    )
    parser.addini(
        "corral_guard", "run tests under corral.guard: true/enforce, report or false", default=""
    )
    parser.addini(
        "corral_guard_allow",
        "module globs whose raw spawns the guard allows (one per line)",
        type="linelist",
        default=[],
    )


def _mode(config: pytest.Config) -> str | None:
    option = config.getoption("corral_guard", None)
    if option is not None:
        return str(option)
    value = str(config.getini("corral_guard") or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return None
    if value in ("1", "true", "yes", "on", "enforce"):
        return "enforce"
    if value == "report":
        return "report"
    raise pytest.UsageError(
        f"corral_guard = {value!r} in the pytest ini options: use true, report or false"
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    if mode is not None:
        config.pluginmanager.register(GuardPlugin(config, mode), "corral-guard")


class GuardPlugin:
    """The active half of the plugin, registered only when the guard is on."""

    def __init__(self, config: pytest.Config, mode: str) -> None:
        from . import guard

        self.guard_module = guard
        self.config = config
        self.mode = mode
        self.allow = list(config.getini("corral_guard_allow"))
        pyproject = config.rootpath / "pyproject.toml"
        self.pyproject = pyproject if pyproject.is_file() else None
        report = config.getoption("corral_guard_report", None)
        if report is None and mode == "report":
            report = str(config.rootpath / _DEFAULT_REPORT)
        self.report_path = Path(report) if report else None
        self.totals: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.violations: list[dict[str, Any]] = []
        self.leaks: list[dict[str, Any]] = []
        self.tests = 0
        self._guards: dict[str, Guard] = {}
        self._before: dict[str, tuple[set[int], set[int]]] = {}
        self._pending: dict[str, list[tuple[str, str, str | None]]] = {}

    # -- per test -----------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        self._before[item.nodeid] = ({t.ident or 0 for t in threading.enumerate()}, _queue_ids())
        self._guards[item.nodeid] = self.guard_module.install(
            "count" if self.mode == "report" else "raise",
            allow=self.allow,
            third_party_mode="count",
            pyproject=self.pyproject,
            metrics=False,
            track=True,
        )
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Generator[None, object, object]:
        guard = self._guards.get(pyfuncitem.nodeid)
        original = pyfuncitem.obj
        if guard is None or not inspect.iscoroutinefunction(original):
            return (yield)
        pending = self._pending.setdefault(pyfuncitem.nodeid, [])
        pyfuncitem.obj = _in_loop(original, guard, pending)
        try:
            return (yield)
        finally:
            pyfuncitem.obj = original

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield
        guard = self._guards.get(item.nodeid)
        if guard is not None and self.mode == "enforce":
            refused = guard.violations
            if refused:
                # the error may have been swallowed (a thread's run, a task nobody awaited)
                sites = "\n".join(f"  {spawn.describe()}" for spawn in refused)
                pytest.fail(
                    "corral guard: this test's code started raw concurrency:\n"
                    f"{sites}\nuse {_replacements(refused)} (or add the module to "
                    "corral_guard_allow)",
                    pytrace=False,
                )
        return result

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:
            self._finish(item)

    def _finish(self, item: pytest.Item) -> None:
        guard = self._guards.pop(item.nodeid, None)
        threads_before, queues_before = self._before.pop(item.nodeid, (set(), set()))
        if guard is None:
            return
        guard.uninstall()
        self.tests += 1
        for spawn in guard.spawns():
            self._add(item.nodeid, spawn)
        for spawn in guard.violations:
            self.violations.append({"test": item.nodeid, **spawn.as_dict()})
        leaks = list(self._pending.pop(item.nodeid, []))
        deadline = time.monotonic() + _THREAD_GRACE
        for thread in list(guard.threads):
            if (thread.ident or 0) in threads_before:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                leaks.append(("thread", repr(thread), guard.site_of(thread)))
        queue_module = sys.modules.get("corral.queue")
        if queue_module is not None:
            for queue in queue_module.open_queues():
                if id(queue) not in queues_before:
                    leaks.append(("queue", f"corral.TaskQueue {queue.name!r}", None))
        for kind, what, site in leaks:
            self.leaks.append({"test": item.nodeid, "kind": kind, "what": what, "site": site})
            where = f" (spawned at {site})" if site else ""
            noun = {"task": "a pending task", "thread": "a live thread", "queue": "an open queue"}
            warnings.warn(
                CorralLeakWarning(f"corral guard: test leaked {noun[kind]}: {what}{where}"),
                stacklevel=1,
            )

    def _add(self, test: str, spawn: RawSpawn) -> None:
        key = (spawn.kind, spawn.package, spawn.site)
        row = self.totals.get(key)
        if row is None:
            row = self.totals[key] = {
                "kind": spawn.kind,
                "package": spawn.package,
                "site": spawn.site,
                "caller": spawn.caller,
                "third_party": spawn.third_party,
                "count": 0,
                "tests": [],
            }
        row["count"] += spawn.count
        if len(row["tests"]) < _SHOWN_TESTS:
            row["tests"].append(test)

    # -- end of session ----------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        spawns = sorted(self.totals.values(), key=lambda r: (-r["count"], r["package"], r["site"]))
        return {
            "format": REPORT_FORMAT,
            "version": 1,
            "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": self.mode,
            "tests": self.tests,
            "spawns": spawns,
            "violations": self.violations,
            "leaks": self.leaks,
        }

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.report()
        if self.mode == "report" or report["spawns"]:
            terminalreporter.write_sep("=", "corral guard: raw spawns by package and site")
            for line in summary_lines(report):
                terminalreporter.write_line(line)
        if self.report_path is not None:
            _write_json(self.report_path, report)
            terminalreporter.write_line(f"corral guard: report written to {self.report_path}")


def _in_loop(
    fn: Callable[..., Any], guard: Guard, pending: list[tuple[str, str, str | None]]
) -> Callable[..., Any]:
    """Wrap an async test so the guard watches the loop or trio run it runs in."""

    @functools.wraps(fn)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        import anyio

        guard.attach()
        try:
            return await fn(*args, **kwargs)
        finally:
            for _ in range(3):  # let work that is finishing finish
                await anyio.sleep(0)
            for task in list(guard.tasks):
                if not task.done():
                    pending.append(("task", repr(task), guard.site_of(task)))
            for trio_task in list(guard.trio_tasks):
                pending.append(("task", f"trio task {trio_task.name}", guard.site_of(trio_task)))
            guard.detach()

    return guarded


def _queue_ids() -> set[int]:
    queue_module = sys.modules.get("corral.queue")
    return set() if queue_module is None else {id(q) for q in queue_module.open_queues()}


def _replacements(spawns: Iterable[RawSpawn]) -> str:
    from .guard import REPLACEMENTS

    return " or ".join(dict.fromkeys(REPLACEMENTS[s.kind] for s in spawns))


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report's raw spawns as an aligned text table (also used by ``corral audit``)."""
    rows = [["package", "kind", "site", "count", "called from"]]
    rows += [
        [r["package"], r["kind"], r["site"], str(r["count"]), r["caller"] or "-"]
        for r in report["spawns"]
    ]
    if len(rows) == 1:
        return [f"no raw spawns in {report['tests']} test(s)"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    total = sum(r["count"] for r in report["spawns"])
    lines.append(
        f"{total} raw spawn(s) at {len(report['spawns'])} site(s) in {report['tests']} test(s)"
    )
    if report["leaks"]:
        lines.append(f"{len(report['leaks'])} leak(s): see the CorralLeakWarning lines above")
    return lines


def _write_json(path: Path, report: dict[str, Any]) -> None:
    """Write atomically (a temp file renamed over the target, never through a symlink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corral-guard-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
