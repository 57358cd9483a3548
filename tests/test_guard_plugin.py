"""The pytest plugin (``pytest --corral-guard``), run with pytester on a sample project.

The sample has its own code (``test_sample.py``) and a third-party-style library,
``thirdlib``, in a ``site-packages`` directory of its own, so the plugin must tell the two
apart the way it does in a real project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import corral.queue  # noqa: F401 (loaded here, so in-process runs share one module object)
import pytest

THIRDLIB = """\
import asyncio
import threading

release = threading.Event()

def start_thread():
    t = threading.Thread(target=release.wait, args=(0.2,))
    t.start()  # THIRDLIB-THREAD
    return t

def leak_thread():
    t = threading.Thread(target=release.wait, args=(5,), daemon=True, name="lingering")
    t.start()
    return t

def fire_and_forget():
    return asyncio.ensure_future(asyncio.sleep(3600))  # THIRDLIB-TASK
"""

CONFTEST = """\
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "site-packages"))

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

SAMPLE = """\
import asyncio

import pytest
import corral
import thirdlib

pytestmark = pytest.mark.anyio

async def work():
    pass

@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_raw_task():
    await asyncio.create_task(work())  # RAW-TASK

@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_raw_nursery():
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(work)  # RAW-NURSERY

async def test_spawn():
    async with corral.TaskQueue("bg", workers=2, capacity=10, default=True):
        await corral.spawn(work)
    async with corral.TaskGroup(limit=2) as group:
        group.start_soon(work)

def test_third_party_thread():
    thirdlib.start_thread().join()  # CALLS-THIRDLIB

@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_leaks_a_task():
    thirdlib.fire_and_forget()

def test_leaks_a_thread():
    thirdlib.leak_thread()

# asyncio only: a trio nursery left open and collected later asserts in Nursery.__del__
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_leaks_a_queue():
    queue = corral.TaskQueue("forgotten", workers=1, capacity=1)
    await queue.__aenter__()
    LEAKED.append(queue)  # kept alive: the runner cancels its workers when the loop closes

LEAKED = []
"""


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture
def sample(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    site = pytester.path / "site-packages"
    site.mkdir()
    (site / "thirdlib.py").write_text(THIRDLIB)
    pytester.makepyfile(test_sample=SAMPLE)
    return pytester


@pytest.fixture(autouse=True)
def release_threads() -> Any:
    yield
    lib = sys.modules.get("thirdlib")
    if lib is not None:
        lib.release.set()


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED", "ERROR"):
            if line.startswith("test_sample.py::") and f" {word}" in line:
                found[line.split(" ", 1)[0].split("::", 1)[1]] = word
    return found


def test_enforce_fails_raw_spawns_from_the_project_with_the_site(
    sample: pytest.Pytester,
) -> None:
    result = sample.runpytest("--corral-guard", "-v", "-p", "no:cacheprovider", "-W", "default")
    got = outcomes(result)
    assert got["test_raw_task[asyncio]"] == "FAILED"
    assert got["test_raw_nursery[trio]"] == "FAILED"
    assert got["test_spawn[asyncio]"] == got["test_spawn[trio]"] == "PASSED"
    assert got["test_third_party_thread"] == "PASSED"  # counted, not failed
    text = result.stdout.str()
    assert f"test_sample spawned a raw task from test_sample.py:{line_of(SAMPLE, 'RAW-TASK')}" in (
        text
    )
    assert f"from test_sample.py:{line_of(SAMPLE, 'RAW-NURSERY')}" in text
    assert "corral.spawn" in text  # the replacement is named
    # the end-of-run table counts the library's spawn and names the project's caller
    thread_site = f"thirdlib.py:{line_of(THIRDLIB, 'THIRDLIB-THREAD')}"
    (row,) = [
        line for line in result.outlines if line.startswith("thirdlib ") and thread_site in line
    ]
    assert row.split()[1:] == [
        "thread",
        thread_site,
        "1",
        f"test_sample.py:{line_of(SAMPLE, 'CALLS-THIRDLIB')}",
    ]


def test_leaks_are_reported(sample: pytest.Pytester) -> None:
    result = sample.runpytest("--corral-guard", "-p", "no:cacheprovider", "-k", "leaks")
    text = result.stdout.str()
    result.assert_outcomes(passed=3, warnings=3)
    task_site = f"thirdlib.py:{line_of(THIRDLIB, 'THIRDLIB-TASK')}"
    assert "leaked a pending task: <Task pending" in text
    assert f"(spawned at {task_site})" in text
    assert "leaked a live thread: <Thread(lingering" in text
    assert "leaked an open queue: corral.TaskQueue 'forgotten'" in text
    assert text.count("CorralLeakWarning") >= 3


def test_report_mode_counts_instead_of_failing_and_writes_json(
    sample: pytest.Pytester,
) -> None:
    out = sample.path / "reports" / "guard.json"
    result = sample.runpytest(
        "--corral-guard=report", f"--corral-guard-report={out}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=8, warnings=3)
    assert "corral guard: raw spawns by package and site" in result.stdout.str()
    report = json.loads(out.read_text())
    assert report["format"] == "corral-guard-report" and report["mode"] == "report"
    rows = {(r["package"], r["kind"], r["site"]): r for r in report["spawns"]}
    raw = rows[("test_sample", "task", f"test_sample.py:{line_of(SAMPLE, 'RAW-TASK')}")]
    assert raw["count"] == 1 and raw["tests"] == ["test_sample.py::test_raw_task[asyncio]"]
    lib = rows[("thirdlib", "thread", f"thirdlib.py:{line_of(THIRDLIB, 'THIRDLIB-THREAD')}")]
    assert lib["third_party"] and lib["caller"] == (
        f"test_sample.py:{line_of(SAMPLE, 'CALLS-THIRDLIB')}"
    )
    assert report["violations"] == []
    assert {leak["kind"] for leak in report["leaks"]} == {"task", "thread", "queue"}


def test_ini_option_turns_it_on_and_allow_globs_exempt(sample: pytest.Pytester) -> None:
    sample.makeini("[pytest]\ncorral_guard = true\n")
    result = sample.runpytest("-p", "no:cacheprovider", "-k", "raw_task")
    result.assert_outcomes(failed=1)
    sample.makeini("[pytest]\ncorral_guard = true\ncorral_guard_allow = test_sample\n")
    result = sample.runpytest("-p", "no:cacheprovider", "-k", "raw_task")
    result.assert_outcomes(passed=1)
    sample.makeini("[pytest]\ncorral_guard = loud\n")
    result = sample.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "corral_guard = 'loud'" in result.stderr.str()


def test_without_the_flag_the_plugin_is_inert(sample: pytest.Pytester) -> None:
    result = sample.runpytest("-p", "no:cacheprovider", "-k", "raw or third")
    result.assert_outcomes(passed=3)
    assert "corral guard" not in result.stdout.str()
    assert not (sample.path / "corral-guard.json").exists()


def test_a_swallowed_refusal_still_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_swallow="""
        import threading

        def test_swallowed():
            try:
                threading.Thread(target=print).start()  # SWALLOWED
            except Exception:
                pass
        """
    )
    result = pytester.runpytest("--corral-guard", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*this test's code started raw concurrency*", "*test_swallow.py:5*"]
    )


def test_importing_the_plugin_loads_neither_the_guard_nor_the_linter() -> None:
    code = (
        "import sys, corral.pytest_plugin\n"
        "print([m for m in ('corral.guard', 'corral.lint_rules', 'libcst', 'yaml')"
        " if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("corral") == "corral.pytest_plugin"
    assert Path(__file__).parent.joinpath("..", "runtime", "pytest_plugin.py").is_file()
