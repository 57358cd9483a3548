"""What the CRL plugin adds to a flake8 run: the same flake8, same files, with and without it.

"Without" hides corral's distribution from flake8's plugin discovery, so both runs use the same
flake8, pycodestyle and pyflakes. Run: python benchmarks/flake8_overhead.py [PATH ...]
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

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


def run(driver: str, paths: list[str]) -> tuple[float, float, int]:
    """Wall time, CPU time (user + sys of the flake8 processes) and CRL finding count."""
    cpu = cpu_of_children()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", driver, "--jobs", "2", "--exit-zero", *paths],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    crl = sum(1 for line in proc.stdout.splitlines() if ": CRL" in line)
    return elapsed, cpu_of_children() - cpu, crl


def main() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    default = [
        str(stdlib / p) for p in ("asyncio", "concurrent", "multiprocessing", "json", "email")
    ]
    paths = sys.argv[1:] or default
    without: list[tuple[float, float]] = []
    with_: list[tuple[float, float]] = []
    crl = 0
    for _ in range(5):  # interleaved, so load on a shared machine hits both alike
        wall, cpu, _ = run(WITHOUT_PLUGIN, paths)
        without.append((wall, cpu))
        wall, cpu, crl = run(WITH_PLUGIN, paths)
        with_.append((wall, cpu))
    print(f"files: {', '.join(paths)}")
    for i, label in enumerate(("wall", "cpu")):
        base = statistics.median(x[i] for x in without)
        plugged = statistics.median(x[i] for x in with_)
        print(
            f"{label:4}: without plugin {base:6.2f}s  with plugin {plugged:6.2f}s  "
            f"overhead {100 * (plugged - base) / base:+.1f}% (target <= 5%)"
        )
    print(f"CRL findings with the plugin: {crl}")


if __name__ == "__main__":
    main()
