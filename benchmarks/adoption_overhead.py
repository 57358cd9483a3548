"""What adoption costs on the CPython stdlib, and what ``corral fix`` would do there.

1. ``corral check`` with a 500-entry baseline and SARIF output against the plain run (text,
   no baseline), both measured in this run, cold (``--no-cache``) and warm; prints the ratios.
   Target: within 10% of the plain run.
2. ``corral fix`` as a dry run over the same tree: how many calls it would rewrite, how many it
   refuses and why, and whether every rewritten file still compiles.

Usage: python benchmarks/adoption_overhead.py [--repeat N] [--skip-fix]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

BASELINE_SIZE = 500
# What the `corral` console script does (`python -m corral.lint_rules.cli` would run the CLI
# module as __main__, apart from the copy the adoption commands register with).
LAUNCH = "import sys; from corral.lint_rules.cli import main; sys.exit(main())"


def corral(*args: str, cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (the command and its worker processes) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def make_baseline(stdlib: Path, work: Path) -> Path:
    """Baseline the stdlib, then keep exactly 500 entries (padding with stale ones if short)."""
    path = work / "baseline.json"
    corral("baseline", str(stdlib), "--baseline", str(path), "--no-cache", cwd=work)
    data = json.loads(path.read_text())
    entries = sorted(data["entries"], key=lambda e: (e["path"], e["code"], e["line"]))
    real = len(entries)
    entries = entries[:BASELINE_SIZE]
    pad = 0
    while len(entries) < BASELINE_SIZE:
        entries.append(
            {"code": "CRL201", "line": f"gone({pad})", "occurrence": 0, "path": entries[0]["path"]}
        )
        pad += 1
    data["entries"] = entries
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"baseline: {real} findings in the stdlib, kept {BASELINE_SIZE} ({pad} padded)")
    return path


def measure(stdlib: Path, work: Path, repeat: int) -> None:
    baseline = make_baseline(stdlib, work)
    plain = [str(stdlib), "--no-baseline"]
    adopted = [str(stdlib), "--baseline", str(baseline), "--output-format", "sarif"]
    for label, extra in (("cold (--no-cache)", ["--no-cache"]), ("warm cache", [])):
        corral("check", *plain, cwd=work)  # prime the cache (and the OS file cache)
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "adopted": []}
        for _ in range(repeat):  # alternate so drift on a shared machine hits both alike
            runs["plain"].append(corral("check", *plain, *extra, cwd=work))
            runs["adopted"].append(corral("check", *adopted, *extra, cwd=work))
        # the fastest wall time and the median CPU time are the least disturbed by neighbours
        wall = {k: min(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        print(
            f"{label:<18} wall: plain {wall['plain']:6.3f}s  baseline(500)+sarif "
            f"{wall['adopted']:6.3f}s  ratio {wall['adopted'] / wall['plain']:5.3f}   "
            f"cpu: {cpu['plain']:6.3f}s vs {cpu['adopted']:6.3f}s  ratio "
            f"{cpu['adopted'] / cpu['plain']:5.3f}   (best/median of {repeat})"
        )


def fix_counts(stdlib: Path) -> None:
    from corral.lint_rules.cli import display_path
    from corral.lint_rules.discovery import iter_python_files
    from corral.lint_rules.fixes import _fix_file
    from corral.lint_rules.project import load_project

    project = load_project(None, start=Path(tempfile.gettempdir()))
    start = time.perf_counter()
    rewrites: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    files = broken = 0
    for path in iter_python_files([stdlib], project.config):
        fix = _fix_file(project, display_path(path), path)
        if fix is None:
            continue
        for refusal in fix.refusals:
            reason = (
                refusal.reason.split(" (")[0]
                if "not a call" not in refusal.reason
                else "not a call"
            )
            refusals[f"{refusal.code} {reason}"] += 1
        if fix.changed:
            files += 1
            rewrites["calls"] += fix.fixed
            try:
                compile(fix.after, str(path), "exec")
            except SyntaxError:
                broken += 1
    elapsed = time.perf_counter() - start
    print(
        f"\ncorral fix --diff on the stdlib ({elapsed:.1f}s): would rewrite {rewrites['calls']} "
        f"calls in {files} files; {broken} rewritten files fail to compile; "
        f"{sum(refusals.values())} findings refused:"
    )
    for reason, count in refusals.most_common():
        print(f"  {count:5d}  {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-fix", action="store_true")
    args = parser.parse_args()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    print(f"CPython {sys.version.split()[0]} stdlib at {stdlib}")
    with tempfile.TemporaryDirectory() as tmp:
        measure(stdlib, Path(tmp), args.repeat)
    if not args.skip_fix:
        fix_counts(stdlib)


if __name__ == "__main__":
    main()
