"""corral.guard: each detection path, each mode, attribution, uninstall and corral's own work.

Every test spawns for real (tasks on both anyio backends, threads, executors) and reads what
the guard recorded; sites are checked to the exact file:line.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import importlib
import importlib.util
import logging
import multiprocessing
import multiprocessing.pool
import multiprocessing.process
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import corral
import pytest
from corral import guard
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

HERE = Path(__file__).name

FAKELIB = """\
import threading

def start_thread():
    t = threading.Thread(target=lambda: None)
    t.start()  # SPAWN-THREAD
    return t

def run(callback):
    return callback()  # CALLBACK
"""


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def here() -> int:
    """The line number of the caller's next line (where the spawn under test is)."""
    return sys._getframe(1).f_lineno + 1


@pytest.fixture(autouse=True)
def no_guard_left() -> Iterator[None]:
    yield
    leftover = guard.current()
    if leftover is not None:
        leftover.uninstall()
        pytest.fail("a test left a guard installed")


@pytest.fixture
def fakelib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An installed-library stand-in: a package under a site-packages directory."""
    site = tmp_path / "site-packages" / "fakelib"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(FAKELIB)
    monkeypatch.syspath_prepend(str(site.parent))
    module = importlib.import_module("fakelib")
    yield module
    sys.modules.pop("fakelib", None)


def sites(g: guard.Guard, kind: str | None = None) -> list[str]:
    return [s.site for s in g.spawns() if kind is None or s.kind == kind]


async def noop() -> None:
    pass


# -- asyncio task paths ---------------------------------------------------------------------
ASYNCIO_SPAWNS: dict[str, Callable[[], Any]] = {}


async def spawn_with(api: str) -> int:
    """Spawn one task through ``api``; returns the line of the spawning call."""
    loop = asyncio.get_running_loop()
    if api == "create_task":
        line = here()
        await asyncio.create_task(noop())
    elif api == "ensure_future":
        line = here()
        await asyncio.ensure_future(noop())
    elif api == "loop.create_task":
        line = here()
        await loop.create_task(noop())
    elif api == "TaskGroup":
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
            line = here()
            tg.create_task(noop())
    else:
        assert api == "gather"
        line = here()
        await asyncio.gather(noop())
    return line


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    "api", ["create_task", "ensure_future", "loop.create_task", "TaskGroup", "gather"]
)
async def test_asyncio_task_apis_are_seen_at_their_call_site(api: str) -> None:
    with guard.install("count", metrics=False) as g:
        line = await spawn_with(api)
    assert g.spawns() == [
        guard.RawSpawn("task", "test_guard", f"{HERE}:{line}", None, 1, False, "count")
    ]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_task_built_directly_bypasses_the_factory() -> None:
    """Documented gap: asyncio.Task(coro, loop=loop) never calls the loop's task factory."""
    with guard.install("count", metrics=False) as g:
        await asyncio.Task(noop(), loop=asyncio.get_running_loop())
    assert g.spawns() == []


async def test_anyio_task_group_spawns_are_seen_on_both_backends() -> None:
    with guard.install("count", metrics=False) as g:
        async with anyio.create_task_group() as tg:
            line = here()
            tg.start_soon(noop)
    assert sites(g) == [f"{HERE}:{line}"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_nursery_spawns_are_seen_by_the_instrument() -> None:
    import trio

    with guard.install("count", metrics=False) as g:
        async with trio.open_nursery() as nursery:
            line = here()
            nursery.start_soon(noop)
            await nursery.start(started)
    assert [(s.site, s.count) for s in g.spawns()] == [
        (f"{HERE}:{line}", 1),
        (f"{HERE}:{line + 1}", 1),
    ]


async def started(task_status: Any) -> None:
    task_status.started()


async def test_corral_own_work_is_never_reported(tmp_path: Path) -> None:
    """Queue and group workers, corral.spawn, corral.sync threads, store writers: zero."""
    with guard.install("raise", metrics=False) as g:
        async with corral.TaskQueue("q", workers=3, capacity=10, default=True) as q:
            await q.submit_nowait(noop)
            await corral.spawn(noop)
        async with corral.TaskGroup(limit=4) as group:
            for _ in range(10):
                group.start_soon(noop)
        store = corral.SQLiteStore(tmp_path / "tasks.db")
        registered = corral.task(name="guard-noop")(noop)
        async with corral.TaskQueue("durable", workers=2, capacity=10, store=store) as dq:
            await dq.submit_nowait(registered)
        await anyio.to_thread.run_sync(lambda: None)  # anyio's bounded worker threads
    with guard.install("raise", metrics=False) as g2:
        with corral.sync.TaskGroup(limit=2) as sgroup:
            sgroup.start_soon(print, end="")
        with corral.sync.TaskQueue("sq", workers=2, capacity=10) as sq:
            sq.submit_nowait(print, end="").result(timeout=10)
    assert g.spawns() == [] and g.violations == []
    assert g2.spawns() == [] and g2.violations == []


async def test_user_spawn_inside_a_corral_worker_is_reported() -> None:
    """corral frames below the user's job do not hide the job's own raw spawn."""
    lines: list[int] = []

    async def job() -> None:
        lines.append(here())
        await corral_free_spawn()

    with guard.install("count", metrics=False) as g:
        async with corral.TaskQueue("q", workers=1, capacity=1) as q:
            await q.submit_nowait(job)
    assert sites(g) == [f"{HERE}:{SPAWN_LINE}"]


async def corral_free_spawn() -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(noop)  # SPAWN-LINE


SPAWN_LINE = line_of(Path(__file__).read_text(), "# SPAWN-" + "LINE")


# -- threads, executors, processes -----------------------------------------------------
def test_thread_paths_are_seen() -> None:
    done = threading.Event()
    with guard.install("count", metrics=False) as g:
        t = threading.Thread(target=done.set)
        line = here()
        t.start()
        t.join()
        line2 = here()
        _thread.start_new_thread(lambda: None, ())
        timer = threading.Timer(0, lambda: None)
        line3 = here()
        timer.start()
        timer.join()
    assert sorted(sites(g, "thread")) == sorted(
        [f"{HERE}:{line}", f"{HERE}:{line2}", f"{HERE}:{line3}"]
    )


def test_executor_and_process_paths_are_seen() -> None:
    with guard.install("count", metrics=False) as g:
        line = here()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            ex.submit(lambda: None).result()
        line2 = here()
        concurrent.futures.ProcessPoolExecutor(1).shutdown()  # starts no process until used
        line3 = here()
        with multiprocessing.pool.ThreadPool(1) as pool:
            pool.apply(lambda: None)
    # the executors' own worker threads are part of the executor, not reported again
    assert sorted(sites(g)) == sorted([f"{HERE}:{line}", f"{HERE}:{line2}", f"{HERE}:{line3}"])
    assert {s.kind for s in g.spawns()} == {"executor"}


def test_process_start_is_refused_before_a_process_exists() -> None:
    proc = multiprocessing.get_context("spawn").Process(target=print)
    with (
        guard.install("raise", metrics=False) as g,
        pytest.raises(corral.RawConcurrencyError) as info,
    ):
        line = here()
        proc.start()
    assert f"from {HERE}:{line}" in str(info.value)
    assert proc.pid is None
    assert g.violations[0].kind == "process"


def test_raise_mode_refuses_in_the_spawning_code_with_site_and_replacement() -> None:
    with guard.install("raise", metrics=False) as g:
        t = threading.Thread(target=print)
        with pytest.raises(corral.RawConcurrencyError) as info:
            line = here()
            t.start()
    message = str(info.value)
    assert f"from {HERE}:{line}" in message
    assert "corral.sync.spawn" in message
    assert info.value.spawn == g.violations[0]
    assert not t.is_alive() and t.ident is None  # never started


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_raise_mode_closes_the_refused_coroutine() -> None:
    with guard.install("raise", metrics=False), warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        with pytest.raises(corral.RawConcurrencyError, match=r"corral\.spawn"):
            asyncio.create_task(noop())  # noqa: RUF006 (refused: there is no task)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_raise_mode_on_trio_refuses_at_start_soon() -> None:
    import trio

    with guard.install("raise", metrics=False) as g:
        async with trio.open_nursery() as nursery:
            with pytest.raises(corral.RawConcurrencyError) as info:
                line = here()
                nursery.start_soon(noop)
    assert f"from {HERE}:{line}" in str(info.value)
    assert len(g.violations) == 1


def test_warn_mode_logs_once_per_call_site(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "corral.guard")
    with guard.install("warn", metrics=False) as g:
        for _ in range(3):
            line = here()
            threading.Thread(target=print, args=("",), kwargs={"end": ""}).start()
    records = [r for r in caplog.records if r.name == "corral.guard"]
    assert len(records) == 1
    assert f"{HERE}:{line}" in records[0].getMessage()
    assert "corral.sync.spawn" in records[0].getMessage()
    assert g.spawns()[0].count == 3


def test_count_mode_feeds_the_corral_collector() -> None:
    registry = CollectorRegistry()
    with guard.install("count", registry=registry):
        for _ in range(2):
            line = here()
            threading.Thread(target=print, kwargs={"end": ""}).start()
        value = registry.get_sample_value(
            "corral_raw_spawns_total",
            {"kind": "thread", "package": "test_guard", "site": f"{HERE}:{line}"},
        )
    assert value == 2


def test_label_cardinality_is_bounded() -> None:
    registry = CollectorRegistry()
    with guard.install("count", registry=registry, max_sites=2) as g:
        for _ in range(2):  # four sites, twice each: the last two overflow into "other"
            threading.Thread(target=print, kwargs={"end": ""}).start()
            threading.Thread(target=print, kwargs={"end": ""}).start()
            threading.Thread(target=print, kwargs={"end": ""}).start()
            threading.Thread(target=print, kwargs={"end": ""}).start()
    labels = {s.site for s in g.spawns()}
    assert len(labels) == 3 and "other" in labels
    assert g.total == 8
    assert (
        registry.get_sample_value(
            "corral_raw_spawns_total", {"kind": "thread", "package": "test_guard", "site": "other"}
        )
        == 4
    )


# -- attribution through library frames, allow, third-party mode ------------------------
def test_library_spawn_names_the_library_and_the_application_caller(fakelib: Any) -> None:
    with guard.install("count", metrics=False) as g:
        line = here()
        fakelib.start_thread().join()
    (spawn,) = g.spawns()
    assert spawn.package == "fakelib"
    assert spawn.site == f"fakelib/__init__.py:{line_of(FAKELIB, 'SPAWN-THREAD')}"
    assert spawn.caller == f"{HERE}:{line}"
    assert spawn.third_party
    assert spawn.describe() == (
        f"fakelib spawned a raw thread from {spawn.site}, called from {HERE}:{line}"
    )


def test_application_spawn_through_a_library_callback_is_the_application(fakelib: Any) -> None:
    """The first frame outside the runtime is the spawner, even when a library called it."""
    with guard.install("count", metrics=False) as g:
        fakelib.run(spawn_a_thread)
    (spawn,) = g.spawns()
    assert (spawn.package, spawn.site, spawn.caller) == (
        "test_guard",
        f"{HERE}:{THREAD_LINE}",
        None,
    )


def spawn_a_thread() -> None:
    threading.Thread(target=print, kwargs={"end": ""}).start()  # THREAD-LINE


THREAD_LINE = line_of(Path(__file__).read_text(), "# THREAD-" + "LINE")


def test_third_party_mode_counts_libraries_and_refuses_the_application(fakelib: Any) -> None:
    with guard.install("raise", third_party_mode="count", metrics=False) as g:
        fakelib.start_thread().join()
        with pytest.raises(corral.RawConcurrencyError):
            threading.Thread(target=print).start()
    assert [(s.package, s.action) for s in g.spawns()] == [
        ("fakelib", "count"),
        ("test_guard", "raise"),
    ]
    assert [v.package for v in g.violations] == ["test_guard"]


def test_allow_takes_module_globs(fakelib: Any) -> None:
    with guard.install("raise", allow=["fakelib.*"], metrics=False) as g:
        fakelib.start_thread().join()
    assert g.spawns() == []
    with guard.install("raise", allow=["test_gu*"], metrics=False) as g:
        threading.Thread(target=print, kwargs={"end": ""}).start()
    assert g.spawns() == []


def test_allow_reads_the_projects_path_globs(tmp_path: Path, fakelib: Any) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.corral.allow]\nCRL1 = ["site-packages/fakelib/**"]\n')
    with guard.install("raise", pyproject=pyproject, metrics=False) as g:
        fakelib.start_thread().join()
        with pytest.raises(corral.RawConcurrencyError):  # tests/ is not exempted
            threading.Thread(target=print).start()
    assert [s.package for s in g.spawns()] == ["test_guard"]
    pyproject.write_text('[tool.corral.allow]\nCRL201 = ["site-packages/fakelib/**"]\n')
    with guard.install("count", pyproject=pyproject, metrics=False) as g:
        fakelib.start_thread().join()  # a task rule does not exempt threads
    assert [s.package for s in g.spawns()] == ["fakelib"]


def test_bad_arguments_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of count, warn, raise"):
        guard.install("loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="third_party_mode"):
        guard.install("count", third_party_mode="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sites"):
        guard.install("count", max_sites=0)
    with pytest.raises(TypeError, match="module globs"):
        guard.install("count", allow=[3])  # type: ignore[list-item]
    bad = tmp_path / "pyproject.toml"
    bad.write_text("[tool.corral.allow]\nCRL101 = 'x'\n")
    with pytest.raises(ValueError, match="must be a list of globs"):
        guard.install("count", pyproject=bad)
    bad.write_text("[tool.corral\n")
    with pytest.raises(ValueError, match="cannot read"):
        guard.install("count", pyproject=bad)
    with guard.install("count", metrics=False), pytest.raises(RuntimeError, match="already"):
        guard.install("count")


# -- loops created later, uninstall ------------------------------------------------------
def test_a_guard_installed_outside_reaches_loops_made_later() -> None:
    async def main() -> int:
        line = here()
        await asyncio.create_task(noop())
        return line

    with guard.install("count", metrics=False) as g:
        line = asyncio.run(main())
        anyio.run(main)
    assert [(s.site, s.count) for s in g.spawns()] == [(f"{HERE}:{line}", 2)]


def test_loop_factory_and_trio_instrument_follow_the_installed_guard() -> None:
    import trio

    async def main() -> int:
        line = here()
        await asyncio.create_task(noop())
        return line

    async def trio_main() -> int:
        async with trio.open_nursery() as nursery:
            line = here()
            nursery.start_soon(noop)
        return line

    with asyncio.Runner(loop_factory=guard.loop_factory) as runner:
        runner.run(main())  # no guard installed: nothing to report, nothing breaks
        with guard.install("count", metrics=False) as g:
            line = runner.run(main())
            line2 = trio.run(trio_main, instruments=[guard.instrument()])
    assert sorted(sites(g)) == sorted([f"{HERE}:{line}", f"{HERE}:{line2}"])


def patched_functions() -> tuple[object, ...]:
    return (
        threading.Thread.start,
        _thread.start_new_thread,
        concurrent.futures.ThreadPoolExecutor.__init__,
        concurrent.futures.ProcessPoolExecutor.__init__,
        multiprocessing.pool.Pool.__init__,
        multiprocessing.process.BaseProcess.start,
        asyncio.new_event_loop,
        asyncio.events.new_event_loop,
    )


def test_uninstall_restores_every_patched_function() -> None:
    before = patched_functions()
    g = guard.install("raise", metrics=False)
    assert all(a is not b for a, b in zip(patched_functions(), before, strict=True))
    g.uninstall()
    g.uninstall()  # idempotent
    after = patched_functions()
    assert after == before
    assert guard.current() is None
    t = threading.Thread(target=print, kwargs={"end": ""})
    t.start()  # no longer refused
    t.join()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_uninstall_puts_back_the_previous_task_factory() -> None:
    loop = asyncio.get_running_loop()
    calls: list[object] = []

    def previous(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        calls.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    original = loop.get_task_factory()
    loop.set_task_factory(previous)
    try:
        async with guard.install("count", metrics=False) as g:
            assert loop.get_task_factory() is not previous
            await asyncio.create_task(noop())  # chained: the previous factory still runs
        assert loop.get_task_factory() is previous
        assert len(calls) == 1 and g.total == 1
    finally:
        loop.set_task_factory(original)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is 3.12+")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_chains_to_eager_task_factory() -> None:
    loop = asyncio.get_running_loop()
    original = loop.get_task_factory()
    eager = asyncio.eager_task_factory  # type: ignore[attr-defined,unused-ignore]
    loop.set_task_factory(eager)
    ran: list[bool] = []

    async def mark() -> None:
        ran.append(True)

    try:
        with guard.install("count", metrics=False) as g:
            task = asyncio.create_task(mark())
            assert ran == [True]  # eager: ran before create_task returned
            await task
        assert loop.get_task_factory() is eager and g.total == 1
    finally:
        loop.set_task_factory(original)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_uninstall_removes_the_trio_instrument_and_nursery_wrappers() -> None:
    import trio

    start_soon = trio.Nursery.start_soon
    with guard.install("raise", metrics=False):
        assert trio.Nursery.start_soon is not start_soon
    assert trio.Nursery.start_soon is start_soon
    async with trio.open_nursery() as nursery:
        nursery.start_soon(noop)  # neither refused nor counted any more


async def test_track_keeps_the_work_started_outside_corral() -> None:
    with guard.install("count", metrics=False, track=True) as g:
        event = anyio.Event()

        async def wait() -> None:
            await event.wait()

        async with anyio.create_task_group() as tg:
            line = here()
            tg.start_soon(wait)
            await anyio.sleep(0)
            tracked = list(g.tasks) + list(g.trio_tasks)
            assert len(tracked) == 1
            assert g.site_of(tracked[0]) == f"{HERE}:{line}"
            event.set()
        t = threading.Thread(target=print, kwargs={"end": ""})
        t.start()
        t.join()
        assert list(g.threads) == [t]
    assert not g.trio_tasks  # exited tasks leave the live set


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_repeated_spawns_from_one_site_are_all_counted() -> None:
    """The fast path (a site seen before, counted in the loop's own shard) loses nothing."""
    registry = CollectorRegistry()
    with guard.install("count", registry=registry) as g:
        for _ in range(50):
            line = here()
            await asyncio.create_task(noop())

        def other_loop() -> None:
            async def main() -> None:
                for _ in range(20):
                    await asyncio.create_task(noop())  # OTHER-LOOP

            asyncio.run(main())

        worker = threading.Thread(target=other_loop)
        worker.start()
        worker.join()
        sample = registry.get_sample_value(
            "corral_raw_spawns_total",
            {"kind": "task", "package": "test_guard", "site": f"{HERE}:{line}"},
        )
    assert sample == 50
    counts = {s.site: s.count for s in g.spawns() if s.kind == "task"}
    assert counts == {f"{HERE}:{line}": 50, f"{HERE}:{OTHER_LOOP_LINE}": 20}
    assert g.total == 71  # with the thread


OTHER_LOOP_LINE = line_of(Path(__file__).read_text(), "# OTHER-" + "LOOP")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_create_task_from_a_foreign_thread_is_still_counted() -> None:
    """A loop's shard belongs to its thread; a (misused) call from another thread takes the
    locked path and is counted all the same."""
    loop = asyncio.get_running_loop()
    with guard.install("count", metrics=False) as g:
        await asyncio.create_task(noop())  # the loop's thread claims the shard
        done = threading.Event()
        tasks: list[Any] = []

        def foreign() -> None:
            tasks.append(loop.create_task(noop()))  # FOREIGN
            done.set()

        for _ in range(2):
            done.clear()
            t = threading.Thread(target=foreign)
            t.start()
            t.join()
        for task in tasks:
            await task
    counts = {s.site: s.count for s in g.spawns() if s.kind == "task"}
    assert counts[f"{HERE}:{line_of(Path(__file__).read_text(), '# FOR' + 'EIGN')}"] == 2


def test_identical_code_in_two_files_is_told_apart(tmp_path: Path) -> None:
    """Code objects compare equal across files; attribution must not mix them up."""
    source = (
        "import threading\n\ndef spawn():\n"
        "    threading.Thread(target=print, kwargs={'end': ''}).start()\n"
    )
    spawners = []
    for name in ("twin_a", "twin_b"):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        spawners.append(module.spawn)
    assert spawners[0].__code__ == spawners[1].__code__  # what makes this a trap
    with guard.install("count", metrics=False) as g:
        for spawn in spawners * 2:
            spawn()
    assert sorted((s.package, s.site, s.count) for s in g.spawns()) == [
        ("twin_a", "twin_a.py:4", 2),
        ("twin_b", "twin_b.py:4", 2),
    ]


async def test_repeats_on_either_backend_count_in_full() -> None:
    """Repeats from one site take the fast path (the loop's or trio run's own shard)."""
    with guard.install("count", metrics=False) as g:
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                line = here()
                tg.start_soon(noop)
    assert [(s.site, s.count) for s in g.spawns()] == [(f"{HERE}:{line}", 30)]


def test_allowed_repeats_stay_unreported_and_module_uninstall_removes_the_guard() -> None:
    g = guard.install("count", allow=["test_guard"], metrics=False)
    for _ in range(3):  # the first sight is remembered as allowed; repeats skip the walk
        t = threading.Thread(target=int)
        t.start()
        t.join()
    assert g.spawns() == [] and g.total == 0
    guard.uninstall()
    assert guard.current() is None and not g.installed
    guard.uninstall()  # nothing installed: nothing to do
