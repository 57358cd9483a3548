"""Periodic tasks: fire times, overlap, catch-up after downtime, one run per tick in a fleet.

Fire times are checked as pure functions (cron through cronsim, DST included; every=
anchored at the epoch). Schedulers run real queues on both backends; catch-up runs a
durable queue on a real SQLite file across a restart with a controlled clock; the fleet
case runs two schedulers on one real redis-server stream.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import corral
import pytest
from conftest_redis import RedisServer
from corral import RedisStore, Scheduler, SQLiteStore, TaskQueue
from corral.schedule import Periodic, registered

pytestmark = pytest.mark.anyio

UTC = UTC
runs: list[str] = []


@corral.task(name="tests.schedule.tick")
async def tick(scheduled_at: str) -> None:
    runs.append(scheduled_at)


def test_every_is_anchored_at_the_epoch_so_every_process_agrees() -> None:
    p = Periodic(name="e", fn=tick, queue="q", every=timedelta(minutes=5))
    after = datetime(2026, 12, 1, 23, 3, 17, tzinfo=UTC)
    fires = p.fires_after(after)
    assert [next(fires) for _ in range(2)] == [
        datetime(2026, 12, 1, 23, 5, tzinfo=UTC),
        datetime(2026, 12, 1, 23, 10, tzinfo=UTC),
    ]
    # exactly on a tick: that tick is not "after" it
    assert next(p.fires_after(datetime(2026, 12, 1, 23, 5, tzinfo=UTC))) == datetime(
        2026, 12, 1, 23, 10, tzinfo=UTC
    )


def test_cron_in_a_zone_follows_dst_like_cron_does() -> None:
    p = Periodic(name="c", fn=tick, queue="q", cron="30 2 * * *", tz=ZoneInfo("Europe/Berlin"))
    fires = p.fires_after(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    # 02:30 does not exist on 29 March in Berlin: it fires at 03:00 local (01:00 UTC)
    assert next(fires) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert next(fires) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_fires_between_is_half_open_and_bounded() -> None:
    p = Periodic(name="b", fn=tick, queue="q", every=timedelta(minutes=1))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    got = p.fires_between(start, start + timedelta(minutes=3))
    assert got == [start + timedelta(minutes=n) for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, TypeError, "exactly one of cron or every="),
        ({"cron": "* * * * *", "every": timedelta(1)}, TypeError, "exactly one"),
        ({"cron": "61 * * * *"}, ValueError, "bad cron expression"),
        ({"cron": "every day"}, ValueError, "bad cron expression"),
        ({"every": timedelta(0)}, ValueError, "positive timedelta"),
        ({"every": 5}, ValueError, "positive timedelta"),
        ({"cron": "* * * * *", "overlap": "never"}, ValueError, "overlap must be"),
        ({"cron": "* * * * *", "catch_up": "some"}, ValueError, "catch_up must be"),
        ({"cron": "* * * * *", "catch_up": "all"}, ValueError, "runs overlap; say overlap='queue'"),
    ],
)
def test_bad_schedules_are_refused_at_declaration(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        corral.periodic(queue="q", **kwargs)(tick)  # type: ignore[arg-type]


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        corral.periodic("* * * * *", queue="q", tz="Mars/Olympus")(tick)


def test_declared_tasks_are_listed_per_queue() -> None:
    async def report() -> None:
        pass

    corral.periodic("0 * * * *", queue="reports-only", name="tests.hourly")(report)
    assert [p.name for p in registered("reports-only")] == ["tests.hourly"]


async def test_a_scheduler_fires_each_tick_on_an_in_memory_queue() -> None:
    seen: list[str] = []

    async def job(at: str) -> None:
        seen.append(at)

    p = Periodic(
        name="mem", fn=job, queue="mem", every=timedelta(seconds=0.2), pass_scheduled_time=True
    )
    async with TaskQueue("mem", workers=2, capacity=10) as q, Scheduler(q, tasks=[p]) as s:
        assert s.next_fires()[0][0] is p
        await anyio.sleep(1.1)
    # no catch-up on an in-memory queue: only the ticks while open, each once, in order
    assert 4 <= len(seen) <= 6, seen
    assert seen == sorted(set(seen))
    stamps = [datetime.fromisoformat(at) for at in seen]
    assert all((b - a) == timedelta(seconds=0.2) for a, b in itertools.pairwise(stamps))


async def test_overlap_skip_never_runs_a_task_twice_at_once_and_queue_does() -> None:
    for overlap, expect_overlap in (("skip", False), ("queue", True)):
        running = 0
        most = 0

        async def slow() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await anyio.sleep(0.45)
            running -= 1

        p = Periodic(
            name=f"slow-{overlap}",
            fn=slow,
            queue="slow",
            every=timedelta(seconds=0.1),
            overlap=overlap,  # type: ignore[arg-type]
        )
        async with TaskQueue("slow", workers=4, capacity=100) as q, Scheduler(q, tasks=[p]) as s:
            await anyio.sleep(1.0)
        if expect_overlap:
            assert most >= 2
        else:
            assert most == 1
            assert s.skipped[p.name] >= 3


async def test_a_scheduler_refuses_a_task_of_another_queue() -> None:
    p = Periodic(name="x", fn=tick, queue="elsewhere", every=timedelta(seconds=1))
    async with TaskQueue("here", workers=1, capacity=1) as q:
        with pytest.raises(ValueError, match="declared for queue 'elsewhere'"):
            Scheduler(q, tasks=[p])


async def test_a_durable_scheduler_needs_registered_tasks(tmp_path: Path) -> None:
    async def unregistered() -> None:
        pass

    p = Periodic(name="u", fn=unregistered, queue="d", every=timedelta(seconds=1))
    async with TaskQueue("d", workers=1, capacity=4, store=SQLiteStore(tmp_path / "t.db")) as q:
        with pytest.raises(TypeError, match="not a registered task"):
            async with Scheduler(q, tasks=[p]):
                pass


@pytest.mark.parametrize(("catch_up", "expected"), [("all", 10), ("latest", 1), ("none", 0)])
async def test_catch_up_after_downtime_and_no_second_run_after_a_restart(
    tmp_path: Path, catch_up: str, expected: int
) -> None:
    runs.clear()
    now = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
    p = Periodic(
        name=f"tests.catch.{catch_up}",
        fn=tick,
        queue="reports",
        every=timedelta(minutes=1),
        catch_up=catch_up,  # type: ignore[arg-type]
        overlap="queue" if catch_up == "all" else "skip",
        lookback=timedelta(minutes=10),
        pass_scheduled_time=True,
    )
    db = tmp_path / "tasks.db"
    for _restart in range(2):
        queue = TaskQueue("reports", workers=2, capacity=50, store=SQLiteStore(db))
        async with queue as q, Scheduler(q, tasks=[p], clock=lambda: now):
            await anyio.sleep(0.3)
    assert len(runs) == expected, runs  # the restart found every tick it had already run
    latest = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ticks = {(latest - timedelta(minutes=n)).isoformat() for n in range(expected)}
    assert set(runs) == ticks


async def test_a_fleet_on_one_stream_runs_each_tick_once(redis_server: RedisServer) -> None:
    runs.clear()
    stream = f"corral:sched:{uuid.uuid4().hex}"
    p = Periodic(
        name="tests.fleet.tick",
        fn=tick,
        queue="fleet-sched",
        every=timedelta(seconds=0.25),
        catch_up="none",
        pass_scheduled_time=True,
    )
    stores = [RedisStore(redis_server.url, stream, consumer=f"c{n}") for n in range(3)]
    queues = [TaskQueue("fleet-sched", workers=2, capacity=50, store=s) for s in stores]
    async with queues[0] as q0, queues[1] as q1, queues[2] as q2:
        async with Scheduler(q0, tasks=[p]), Scheduler(q1, tasks=[p]), Scheduler(q2, tasks=[p]):
            await anyio.sleep(1.6)
        await anyio.sleep(0.5)  # let the last ticks' runs finish
    assert len(runs) >= 5
    assert len(runs) == len(set(runs)), sorted(runs)  # three schedulers, one run per tick


def test_corral_tasks_schedule_lists_declared_tasks_with_next_fires(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    (tmp_path / "svc_jobs.py").write_text(
        "import corral\n"
        "@corral.periodic('0 3 * * *', queue='nightly', tz='Europe/Berlin')\n"
        "async def vacuum() -> None: ...\n"
        "@corral.periodic(every=__import__('datetime').timedelta(minutes=5), queue='reports')\n"
        "async def roll_up() -> None: ...\n"
    )

    def tasks(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral.lint_rules.cli", "tasks", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = tasks("schedule", "--import", "svc_jobs", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["svc_jobs.vacuum"]["schedule"] == "0 3 * * *"
    assert rows["svc_jobs.vacuum"]["tz"] == "Europe/Berlin"
    nxt = datetime.fromisoformat(rows["svc_jobs.roll_up"]["next"])
    assert nxt.minute % 5 == 0 and nxt.second == 0
    text = tasks("schedule", "--import", "svc_jobs", "--queue", "nightly")
    assert text.returncode == 0
    assert "svc_jobs.vacuum" in text.stdout and "roll_up" not in text.stdout
    broken = tasks("schedule", "--import", "no_such_module_here")
    assert broken.returncode == 2
    assert "cannot import 'no_such_module_here'" in broken.stderr
    assert "Traceback" not in broken.stderr
