"""corral check vs ruff (TID251 banned-api for the same names), cold and warm, on this
interpreter's stdlib and on a corpus of pinned third-party packages it builds itself.

Cold is ``--no-cache`` for both; warm reads each tool's own cache. Each repetition runs the
four commands interleaved (ruff cold, corral cold, ruff warm, corral warm), so load from other
users falls on both tools alike; medians of ``--repeat`` repetitions (>= 5 for a report) are
printed with the load average, as wall clock and as CPU (user + system, child processes
included). Bytecode is written, as on a user's machine, to a fresh PYTHONPYCACHEPREFIX warmed
by one run. Also prints the findings ruff has that corral does not reproduce at the same line.

Run: python benchmarks/lint_vs_ruff.py [--repeat N] [--corpus stdlib|third-party|both] [PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcorpus import (
    DEFAULT_CACHE,
    corral,
    loadavg,
    measured_env,
    median,
    ruff,
    ruff_config,
    run,
    stdlib,
    third_party,
)

TARGET_COLD, TARGET_WARM = 2.0, 0.7


def form_of(row: dict[str, str]) -> str:
    """The form of a finding, from its typed fields (``kind``, ``qualname``)."""
    kind, code, qualname = row.get("kind", ""), row["code"], row.get("qualname", "")
    if kind in ("subclass", "instantiation"):
        return "Thread/Process subclass or its instantiation"
    if kind == "dynamic":
        return "dynamic lookup (getattr/import_module/__import__)"
    if qualname.startswith("asyncio.AbstractEventLoop."):
        return "method on a traced event loop"
    if qualname in ("asyncio.gather", "asyncio.tasks.gather"):
        return "gather over a comprehension"
    return f"{code} name {kind or 'reference'}"


def bench(name: str, target: Path, repeat: int, work: Path, verbose: bool) -> None:
    env = measured_env(work / f"pycache-{name}")
    project = work / name  # the results cache is its .corral_cache
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.corral]\n")
    config = ruff_config(project)
    corral_cmd = [*corral(), "check", "--strict", "--output-format", "json"]
    ruff_cmd = [ruff(), "check", "--config", str(config), "--output-format", "json"]
    ruff_cmd += ["--exit-zero"]
    ruff_cache = ["--cache-dir", str(work / f"ruff-cache-{name}")]
    cold_corral = [*corral_cmd, "--no-cache", str(target)]
    cold_ruff = [*ruff_cmd, "--no-cache", str(target)]
    warm_corral = [*corral_cmd, str(target)]
    warm_ruff = [*ruff_cmd, *ruff_cache, str(target)]
    run(warm_corral, project, env)  # writes the bytecode and the cache
    run(warm_ruff, project, env)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("rc", "cc", "rw", "cw")}
    load_before = loadavg()
    ruff_out = corral_out = ""
    for _ in range(repeat):
        r = run(cold_ruff, project, env)
        times["rc"].append((r.wall, r.cpu))
        ruff_out = r.stdout
        c = run(cold_corral, project, env)
        times["cc"].append((c.wall, c.cpu))
        corral_out = c.stdout
        r = run(warm_ruff, project, env)
        times["rw"].append((r.wall, r.cpu))
        c = run(warm_corral, project, env)
        times["cw"].append((c.wall, c.cpu))

    def wall(key: str) -> float:
        return median([t[0] for t in times[key]])

    def cpu(key: str) -> float:
        return median([t[1] for t in times[key]])

    files = sum(1 for p in target.rglob("*.py") if "site-packages" not in p.parts)
    print(f"== {name}: {target} ({files} files), {repeat} interleaved repetitions")
    print(f"   load average before {load_before}, after {loadavg()}")
    for tool, cold, warm in (("ruff", "rc", "rw"), ("corral", "cc", "cw")):
        print(
            f"   {tool:6s} cold {wall(cold):6.2f}s wall {cpu(cold):6.2f}s CPU   "
            f"warm {wall(warm):6.2f}s wall {cpu(warm):6.2f}s CPU"
        )
    for label, c, r, target_ratio in (
        ("cold", "cc", "rc", TARGET_COLD),
        ("warm", "cw", "rw", TARGET_WARM),
    ):
        print(
            f"   ratio {label} corral/ruff: {wall(c) / wall(r):.2f}x wall, "
            f"{cpu(c) / cpu(r):.2f}x CPU (target <= {target_ratio}x)"
        )
    ruff_rows = [r for r in json.loads(ruff_out) if r.get("code") == "TID251"]
    corral_rows = json.loads(corral_out)
    ruff_at = {(str(Path(r["filename"]).resolve()), r["location"]["row"]) for r in ruff_rows}
    corral_at = {(str(Path(r["path"]).resolve()), r["line"]) for r in corral_rows}
    missed = sorted(ruff_at - corral_at)
    print(
        f"   findings: ruff {len(ruff_rows)}, corral {len(corral_rows)}; ruff's reproduced "
        f"at the same line: {len(ruff_at) - len(missed)}/{len(ruff_at)}"
    )
    for path, line in missed[:25]:
        text = Path(path).read_text("utf-8", "replace").splitlines()[line - 1].strip()
        print(f"     missed {path}:{line}: {text[:90]}")
    if verbose:
        extra = Counter(
            form_of(r)
            for r in corral_rows
            if (str(Path(r["path"]).resolve()), r["line"]) not in ruff_at
        )
        print("   found by corral only (lines ruff does not report), by form:")
        for form, count in extra.most_common():
            print(f"     {count:5d}  {form}")
        by_code = Counter(r["code"] for r in corral_rows)
        print("   corral by code: " + ", ".join(f"{c} {n}" for c, n in sorted(by_code.items())))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", help="one tree instead of the two corpora")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--corpus", choices=["stdlib", "third-party", "both"], default="both")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache")
    parser.add_argument("--forms", action="store_true", help="count corral-only findings")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    try:
        if args.path:
            bench("tree", Path(args.path).resolve(), args.repeat, work, args.forms)
            return
        if args.corpus in ("stdlib", "both"):
            bench("stdlib", stdlib(), args.repeat, work, args.forms)
        if args.corpus in ("third-party", "both"):
            bench("third-party", third_party(args.cache), args.repeat, work, args.forms)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
