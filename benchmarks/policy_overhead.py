"""What a policy pack with 20 organisation rules costs ``corral check`` cold on the stdlib.

Runs the same cold check (``--no-cache``) with no pack and with a pack of 20 organisation rules
(third-party spawners and stdlib names a platform team might ban), interleaved in one run, and
prints the medians and their ratio (target: at most 1.1x). The organisation rules' targets go
through the same prefilter as the built-in ones, so only files that import one of their modules
and name one of their members are parsed.
Run: python benchmarks/policy_overhead.py [--repeat N] [PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

# What a platform team bans in service code: spawners of third-party libraries. The stdlib
# uses none of them, so this pack measures what carrying 20 more rules costs.
THIRD_PARTY = [
    ["celery.Celery"],
    ["rq.Queue"],
    ["dramatiq.actor"],
    ["apscheduler.schedulers.background.BackgroundScheduler"],
    ["huey.RedisHuey", "huey.SqliteHuey"],
    ["twisted.internet.threads.deferToThread"],
    ["tornado.ioloop.IOLoop"],
    ["aiojobs.create_scheduler"],
    ["anyio.to_thread.run_sync"],
    ["trio.to_thread.run_sync"],
    ["pebble.ProcessPool", "pebble.ThreadPool"],
    ["joblib.Parallel"],
    ["ray.remote"],
    ["dask.delayed"],
    ["billiard.Pool"],
    ["schedule.every"],
    ["arq.create_pool"],
    ["eventlet.GreenPool"],
    ["gevent.pool.Pool"],
    ["loky.get_reusable_executor"],
]
# The same count with stdlib names the stdlib itself uses a lot (subprocess.Popen, os.fork):
# every file that really uses them must be parsed, so this pack also measures extra findings.
STDLIB = [
    ["sched.scheduler"],
    ["socketserver.ThreadingMixIn", "socketserver.ThreadingTCPServer"],
    ["socketserver.ForkingMixIn", "socketserver.ForkingTCPServer"],
    ["os.fork", "os.forkpty"],
    ["os.posix_spawn", "os.posix_spawnp"],
    ["subprocess.Popen"],
    ["signal.setitimer"],
    ["asyncio.to_thread"],
    ["_xxsubinterpreters.create", "_xxsubinterpreters.run_string"],
    *THIRD_PARTY[:11],
]


def organisation_rules(packed: list[list[str]]) -> str:
    lines = ['prefix: BENCH\nversion: "1.0.0"\nrules:']
    for i, targets in enumerate(packed, start=101):
        lines.append(
            f"  - code: BENCH{i}\n"
            f"    name: banned-{i}\n"
            '    since: "1.0.0"\n'
            "    level: default\n"
            f"    summary: banned by the organisation ({targets[0]})\n"
            f"    targets: [{', '.join(targets)}]\n"
            "    also: [subclass-instantiation]\n"
            "    replacement: the platform's governed wrapper\n"
            "    rationale: unbounded work nobody observes\n"
            "    examples: {invalid: [], valid: []}"
        )
    return "\n".join(lines) + "\n"


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return elapsed, len(json.loads(proc.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-policy-bench-"))
    setups = {"no pack": work / "plain"}
    (work / "plain").mkdir()
    (work / "plain" / "pyproject.toml").write_text("[tool.corral]\n")
    for label, packed in (("third-party", THIRD_PARTY), ("stdlib-heavy", STDLIB)):
        assert len(packed) == 20
        root = work / label
        (root / "pack").mkdir(parents=True)
        (root / "pack" / "rules.yaml").write_text(organisation_rules(packed))
        (root / "pack" / "policy.toml").write_text('rule-files = ["rules.yaml"]\n')
        (root / "pyproject.toml").write_text('[tool.corral]\nextends = "pack/policy.toml"\n')
        setups[f"pack: 20 {label} rules"] = root
    cmd = [sys.executable, "-m", "corral.lint_rules.cli", "check", "--no-cache"]
    cmd += ["--output-format", "json", str(args.path)]
    times: dict[str, list[float]] = {name: [] for name in setups}
    counts: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, cwd in setups.items():
            elapsed, counts[name] = timed(cmd, cwd)
            times[name].append(elapsed)
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    print(f"corral check --no-cache {args.path} ({args.repeat} interleaved rounds, load {load})")
    base = statistics.median(times["no pack"])
    for name in setups:
        median = statistics.median(times[name])
        print(f"  {name:<32} {median:6.2f} s median  {median / base:.3f}x  {counts[name]} findings")
    print("  target: the third-party pack at most 1.1x of no pack")


if __name__ == "__main__":
    main()
