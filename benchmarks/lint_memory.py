"""Peak resident memory of a cold check over a large generated tree, corral vs ruff.

The tree (default 100,000 files in /tmp) is small modules of the kinds a monorepo holds: most
name no concurrency at all, one in ten imports asyncio or threading and calls something.
Peak RSS is the largest process of each command's tree (``wait4``), so corral's worker
children count as much as its main process. Target: corral <= ruff at the same size.
Run: python benchmarks/lint_memory.py [--files N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcorpus import corral, loadavg, measured_env, ruff, ruff_config, run

PLAIN = '"""Helpers {i}."""\n\n\ndef f{i}(x):\n    return [y * {i} for y in x]\n' * 4
BANNED = (
    "import asyncio\nimport threading\n\n\n"
    "async def g{i}():\n    asyncio.create_task(g{i}())\n    threading.Thread(target=print)\n"
)


def build(root: Path, count: int) -> None:
    for i in range(count):
        directory = root / f"pkg{i // 1000:03d}"
        if i % 1000 == 0:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "__init__.py").write_text("")
        text = (BANNED if i % 10 == 0 else PLAIN).format(i=i)
        (directory / f"m{i:06d}.py").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the tree here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-memory-"))
    tree = args.keep or work / "tree"
    try:
        if not (tree / "pyproject.toml").exists():
            tree.mkdir(parents=True, exist_ok=True)
            build(tree, args.files)
            (tree / "pyproject.toml").write_text("[tool.corral]\n")
        config = ruff_config(work)
        env = measured_env(work / "pycache")
        corral_cmd = [*corral(), "check", "--no-cache", "--exit-zero", "--output-format"]
        corral_cmd += ["json", "."]
        ruff_cmd = [ruff(), "check", "--config", str(config), "--no-cache", "--exit-zero"]
        ruff_cmd += ["--output-format", "json", "."]
        run([*corral(), "--help"], tree, env)  # bytecode
        before = loadavg()
        r = run(ruff_cmd, tree, env)
        c = run(corral_cmd, tree, env)
        files = sum(1 for _ in tree.rglob("*.py"))
        print(f"{files} files; load average before {before}, after {loadavg()}")
        for tool, got in (("ruff", r), ("corral", c)):
            print(
                f"  {tool:6s} peak RSS {got.rss_kb / 1024:7.1f} MB  wall {got.wall:6.1f}s  "
                f"CPU {got.cpu:6.1f}s"
            )
        state = "met" if c.rss_kb <= r.rss_kb else "NOT met"
        print(f"  ratio RSS corral/ruff {c.rss_kb / r.rss_kb:.2f}x (target <= 1x: {state})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
