"""corral check vs ruff (TID251 banned-api for the same names) on this interpreter's stdlib.

Prints cold and warm times, their ratio to ruff measured in the same run, both finding counts,
every ruff finding corral does not reproduce at the same line, and what corral finds that ruff
cannot (counted by form). Run: python benchmarks/lint_vs_ruff.py [--repeat N] [PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

from corral.lint_rules.catalogue import load_catalogue


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return elapsed, proc.stdout


def banned_names() -> list[str]:
    return sorted({t for rule in load_catalogue() for t in rule.targets if not t.endswith("*")})


def ruff_config(directory: Path, names: list[str]) -> Path:
    lines = ["[lint]", 'select = ["TID251"]', "[lint.flake8-tidy-imports.banned-api]"]
    lines += [f'"{name}".msg = "banned"' for name in names]
    path = directory / "ruff.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    target = Path(args.path)
    ruff = shutil.which("ruff") or sys.exit("ruff is not installed (pip install ruff)")
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    (work / "pyproject.toml").write_text(f'[tool.corral]\ncache-dir = "{work / "cache"}"\n')
    config = ruff_config(work, banned_names())
    corral = [
        sys.executable,
        "-m",
        "corral.lint_rules.cli",
        "check",
        "--strict",
        "--output-format",
        "json",
    ]
    ruff_cmd = [ruff, "check", "--config", str(config), "--output-format", "json", "--exit-zero"]

    ruff_cold, corral_cold, ruff_warm, corral_warm = [], [], [], []
    for _ in range(args.repeat):
        t, ruff_out = timed([*ruff_cmd, "--no-cache", str(target)], work)
        ruff_cold.append(t)
        t, corral_out = timed([*corral, "--no-cache", str(target)], work)
        corral_cold.append(t)
    cache = ["--cache-dir", str(work / "ruff-cache")]
    timed([*ruff_cmd, *cache, str(target)], work)
    timed([*corral, str(target)], work)
    for _ in range(args.repeat):
        ruff_warm.append(timed([*ruff_cmd, *cache, str(target)], work)[0])
        corral_warm.append(timed([*corral, str(target)], work)[0])

    ruff_rows = [r for r in json.loads(ruff_out) if r.get("code") == "TID251"]
    corral_rows = json.loads(corral_out)
    ruff_at = {(str(Path(r["filename"]).resolve()), r["location"]["row"]) for r in ruff_rows}
    corral_at = {(str(Path(r["path"]).resolve()), r["line"]) for r in corral_rows}
    missed = sorted(ruff_at - corral_at)
    extra = Counter(
        form_of(r)
        for r in corral_rows
        if (str(Path(r["path"]).resolve()), r["line"]) not in ruff_at
    )

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    print(f"tree: {target}")
    print(
        f"ruff   cold {med(ruff_cold):6.2f}s  warm {med(ruff_warm):6.2f}s  "
        f"findings {len(ruff_rows)}"
    )
    print(
        f"corral cold {med(corral_cold):6.2f}s  warm {med(corral_warm):6.2f}s  "
        f"findings {len(corral_rows)}"
    )
    print(f"ratio cold corral/ruff: {med(corral_cold) / med(ruff_cold):.2f}x (target <= 3x)")
    print(f"ratio warm corral/ruff: {med(corral_warm) / med(ruff_warm):.2f}x (target <= 1x)")
    print(f"ruff findings reproduced at the same line: {len(ruff_at) - len(missed)}/{len(ruff_at)}")
    for path, line in missed[:25]:
        text = Path(path).read_text("utf-8", "replace").splitlines()[line - 1].strip()
        print(f"  missed {path}:{line}: {text[:90]}")
    print("found by corral only (lines ruff does not report), by form:")
    for form, count in extra.most_common():
        print(f"  {count:5d}  {form}")
    by_code = Counter(r["code"] for r in corral_rows)
    print("corral findings by code: " + ", ".join(f"{c} {n}" for c, n in sorted(by_code.items())))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
