"""The pre-commit case: corral check on one 300-line file and on ten, vs ruff, same run.

pre-commit passes the staged files by name (``--force-exclude``, as the shipped hooks do),
so the run is start-up plus one small parse: CPU (user + system) per run is what it costs a
commit. Interleaved repetitions, medians, load average; bytecode written to a fresh
PYTHONPYCACHEPREFIX warmed by one run, as on a user's machine.

Targets: one file <= 70 ms CPU, ten files <= 80 ms CPU.
Run: python benchmarks/lint_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcorpus import (
    corral,
    instructions,
    loadavg,
    measured_env,
    median,
    ruff,
    ruff_config,
    run,
)

TARGETS_MS = {1: 70, 10: 80}


def module(seed: int, lines: int = 300) -> str:
    """A plausible service module: imports, small handlers, a few banned calls at the end."""
    out = [
        '"""Order handling."""',
        "import asyncio",
        "import threading",
        "from concurrent.futures import ThreadPoolExecutor",
        "",
    ]
    i = 0
    while len(out) < lines - 5:
        i += 1
        out += [
            f"def handler_{seed}_{i}(request, items):",
            f'    """Handle step {i}."""',
            "    total = 0",
            "    for item in items:",
            "        if item.ready:",
            "            total += item.value * 2",
            "        else:",
            "            total -= 1",
            f"    return total + {i}",
            "",
        ]
    out = out[: lines - 5]
    out += [
        "async def main():",
        f"    asyncio.create_task(handler_{seed}_1(None, []))",
        "    threading.Thread(target=print).start()",
        "    ThreadPoolExecutor(2)",
        "",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-latency-"))
    try:
        project = work / "project"
        project.mkdir()
        (project / "pyproject.toml").write_text("[tool.corral]\n")
        config = ruff_config(project)
        names = [f"m{i}.py" for i in range(10)]
        for i, name in enumerate(names):
            (project / name).write_text(module(i))
        env = measured_env(work / "pycache")
        commands = {}
        for count in TARGETS_MS:
            files = names[:count]
            commands[("corral", count)] = [
                *corral(),
                "check",
                "--no-cache",
                "--force-exclude",
                *files,
            ]
            commands[("ruff", count)] = [
                ruff(),
                "check",
                "--config",
                str(config),
                "--no-cache",
                "--force-exclude",
                "--exit-zero",
                *files,
            ]
        # the interpreter's own start-up, same run: how fast this machine is right now
        commands[("python", 0)] = [str(Path(corral()[0]).parent / "python"), "-c", "pass"]
        for cmd in commands.values():
            run(cmd, project, env)  # bytecode, the catalogue cache
        cpu: dict[tuple[str, int], list[float]] = {key: [] for key in commands}
        before = loadavg()
        for _ in range(args.repeat):
            for key, cmd in commands.items():
                cpu[key].append(run(cmd, project, env).cpu * 1000)
        print(f"pre-commit latency, {args.repeat} interleaved repetitions, CPU ms (user+sys)")
        print(f"load average before {before}, after {loadavg()}")
        for count, target in TARGETS_MS.items():
            c, r = median(cpu[("corral", count)]), median(cpu[("ruff", count)])
            state = "met" if c <= target else "NOT met"
            print(
                f"  {count:2d} file(s) of 300 lines: corral {c:6.1f} ms  ruff {r:6.1f} ms  "
                f"ratio {c / max(r, 0.1):5.1f}x   target <= {target} ms: {state}"
            )
        python = median(cpu[("python", 0)])
        print(
            f"  the interpreter alone (python -c pass): {python:.1f} ms; corral above it: "
            + ", ".join(
                f"{n} file(s) {median(cpu[('corral', n)]) - python:.1f} ms" for n in TARGETS_MS
            )
        )
        counted = {key: instructions(cmd, project, env) for key, cmd in commands.items()}
        if all(n is not None for n in counted.values()):
            print("instructions (callgrind, load-independent), millions:")
            for count in TARGETS_MS:
                c, r = counted[("corral", count)], counted[("ruff", count)]
                print(f"  {count:2d} file(s): corral {c:7.1f} M  ruff {r:7.1f} M")
            print(f"  the interpreter alone: {counted[('python', 0)]:.1f} M")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
