"""What the CRL plugin adds to a flake8 run: the same flake8, same files, with and without it.

"Without" hides corral's distribution from flake8's plugin discovery, so both runs use the same
flake8, pycodestyle and pyflakes. Two sets, each interleaved, medians, load average printed:
the densest stdlib packages, and distributed + tornado from the pinned third-party corpus
(``benchcorpus.third_party``). Bytecode is written to a warmed PYTHONPYCACHEPREFIX.
Target: <= 5% CPU on both. Run: python benchmarks/flake8_overhead.py [--repeat N] [PATH ...]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcorpus import instructions, loadavg, measured_env, third_party

WITHOUT_PLUGIN = (
    "import importlib.metadata as m, sys\n"
    "orig = m.distributions\n"
    "m.distributions = lambda **k: (d for d in orig(**k) if d.metadata['Name'] != 'corral')\n"
    "from flake8.main.cli import main\n"
    "sys.exit(main())\n"
)
WITH_PLUGIN = "import sys\nfrom flake8.main.cli import main\nsys.exit(main())\n"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command(driver: str, paths: list[str]) -> list[str]:
    return [sys.executable, "-c", driver, "--jobs", "2", "--exit-zero", *paths]


def run(driver: str, paths: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time, CPU time (user + sys of the flake8 processes) and CRL finding count."""
    cpu = cpu_of_children()
    start = time.perf_counter()
    proc = subprocess.run(
        command(driver, paths),
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    crl = sum(1 for line in proc.stdout.splitlines() if ": CRL" in line)
    return elapsed, cpu_of_children() - cpu, crl


def measure(
    label: str, paths: list[str], repeat: int, env: dict[str, str], counted: bool = False
) -> None:
    run(WITH_PLUGIN, paths, env)  # bytecode
    without: list[tuple[float, float]] = []
    with_: list[tuple[float, float]] = []
    crl = 0
    before = loadavg()
    for _ in range(repeat):  # interleaved, so load on a shared machine hits both alike
        wall, cpu, _ = run(WITHOUT_PLUGIN, paths, env)
        without.append((wall, cpu))
        wall, cpu, crl = run(WITH_PLUGIN, paths, env)
        with_.append((wall, cpu))
    print(f"== {label}: {', '.join(Path(p).name for p in paths)}")
    print(f"   load average before {before}, after {loadavg()}")
    for i, name in enumerate(("wall", "cpu")):
        base = statistics.median(x[i] for x in without)
        plugged = statistics.median(x[i] for x in with_)
        print(
            f"   {name:4}: without plugin {base:6.2f}s  with plugin {plugged:6.2f}s  "
            f"overhead {100 * (plugged - base) / base:+.1f}% (target <= 5%)"
        )
        # the spread of the per-pair overhead: one pair is a run without, then one with
        pairs = sorted(100 * (w[i] - o[i]) / o[i] for o, w in zip(without, with_, strict=True))
        print(f"         per-pair overhead from {pairs[0]:+.1f}% to {pairs[-1]:+.1f}%")
    print(f"   CRL findings with the plugin: {crl}")
    if counted:  # one run of each under callgrind, every flake8 process summed
        plain = instructions(command(WITHOUT_PLUGIN, paths), Path.cwd(), env)
        plugged = instructions(command(WITH_PLUGIN, paths), Path.cwd(), env)
        if plain is not None and plugged is not None:
            print(
                f"   instructions: without plugin {plain:,.1f} M  with plugin {plugged:,.1f} M  "
                f"overhead {100 * (plugged - plain) / plain:+.1f}% (load-independent)"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind; slow)"
    )
    args = parser.parse_args()
    env = measured_env(Path(tempfile.mkdtemp(prefix="corral-flake8-")))
    if args.paths:
        measure("given paths", args.paths, args.repeat, env, args.instructions)
        return
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dense = ("asyncio", "concurrent", "multiprocessing", "json", "email")
    dense_paths = [str(stdlib / p) for p in dense]
    measure("densest stdlib packages", dense_paths, args.repeat, env, args.instructions)
    corpus = third_party()
    picked = [
        str(corpus / "distributed-2024.8.0" / "distributed"),
        str(corpus / "tornado-6.4.1" / "tornado"),
    ]
    measure("distributed + tornado", picked, args.repeat, env, args.instructions)


if __name__ == "__main__":
    main()
