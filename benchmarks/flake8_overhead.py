"""What the CRL plugin adds to a flake8 run: the same flake8, same files, with and without it.

"Without" hides corral's distribution from flake8's plugin discovery, so both runs use the same
flake8, pycodestyle and pyflakes. Run: python benchmarks/flake8_overhead.py [PATH ...]
"""

from __future__ import annotations

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


def run(driver: str, paths: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", driver, "--jobs", "2", "--exit-zero", *paths],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    return elapsed, sum(1 for line in proc.stdout.splitlines() if ": CRL" in line)


def main() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    default = [
        str(stdlib / p) for p in ("asyncio", "concurrent", "multiprocessing", "json", "email")
    ]
    paths = sys.argv[1:] or default
    without, with_ = [], []
    crl = 0
    for _ in range(3):
        without.append(run(WITHOUT_PLUGIN, paths)[0])
        t, crl = run(WITH_PLUGIN, paths)
        with_.append(t)
    base, plugged = statistics.median(without), statistics.median(with_)
    print(f"files: {', '.join(paths)}")
    print(f"flake8 without plugin {base:6.2f}s")
    print(f"flake8 with plugin    {plugged:6.2f}s  ({crl} CRL findings)")
    print(f"overhead: {100 * (plugged - base) / base:+.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
