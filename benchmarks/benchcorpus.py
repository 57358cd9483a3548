"""Shared by the linter benchmarks: the corpora, the measured environment, CPU and RSS per
command (``os.wait4``), the ruff configuration with corral's banned names, medians."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# A fixed, pinned list: every run measures the same code. Pure-Python wheels except tornado's
# (its wheel holds the same .py files on every platform).
WHEELS = (
    "tornado==6.4.1",
    "celery==5.4.0",
    "kombu==5.4.2",
    "billiard==4.2.1",
    "dask==2024.8.0",
    "distributed==2024.8.0",
    "uvicorn==0.30.6",
    "gunicorn==23.0.0",
    "paramiko==3.4.1",
    "joblib==1.4.2",
    "starlette==0.38.2",
    "anyio==4.4.0",
    "trio==0.26.2",
    "httpx==0.27.2",
    "httpcore==1.0.5",
    "redis==5.0.8",
    "eventlet==0.36.1",
    "APScheduler==3.10.4",
    "dramatiq==1.17.0",
)
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "corral-bench"


def stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def third_party(cache: Path = DEFAULT_CACHE) -> Path:
    """The pinned wheels, downloaded once into ``cache`` and unpacked (``.py`` files only)."""
    wheels = cache / "wheels"
    corpus = cache / "third-party"
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [w for w in WHEELS if not _wheel_for(wheels, w)]
    if missing:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "-q", "--no-deps"),
                *("--only-binary=:all:", "-d", str(wheels), *missing),
            ],
            check=True,
        )
    for spec in WHEELS:
        wheel = _wheel_for(wheels, spec)
        if wheel is None:
            sys.exit(f"pip did not download {spec}")
        target = corpus / spec.replace("==", "-")
        if target.is_dir():
            continue
        partial = Path(tempfile.mkdtemp(dir=corpus.parent if corpus.exists() else cache))
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(".py"):
                    archive.extract(name, partial)
        corpus.mkdir(exist_ok=True)
        partial.rename(target)
    return corpus


def _wheel_for(directory: Path, spec: str) -> Path | None:
    name, version = spec.split("==")
    stem = f"{name.replace('-', '_')}-{version}-".lower()
    return next((p for p in directory.glob("*.whl") if p.name.lower().startswith(stem)), None)


def measured_env(prefix: Path) -> dict[str, str]:
    """As on a user's machine: bytecode is written (to a fresh prefix the caller warms)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    return env


@dataclass
class Run:
    wall: float
    cpu: float  # user + system of the command and every process it waited for
    rss_kb: int  # peak resident set of the largest process in the command's tree
    stdout: str
    code: int


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    import time

    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if proc.returncode not in (0, 1):
            sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, text, proc.returncode)


def instructions(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float | None:
    """Instructions (millions) the command executes, counted by valgrind's callgrind (the
    whole process tree): unlike CPU time it does not move with the machine's load, so it
    compares runs made on different days. None where valgrind is not installed."""
    import shutil

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    probe = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", "--trace-children=yes"]
    done = subprocess.run([*probe, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    counts = [
        int(line.rsplit(" ", 1)[1].replace(",", ""))
        for line in done.stderr.splitlines()
        if "Collected :" in line
    ]
    return sum(counts) / 1e6 if counts else None


def banned_names() -> list[str]:
    from corral.lint_rules.catalogue import load_catalogue

    return sorted({t for rule in load_catalogue() for t in rule.targets if not t.endswith("*")})


def ruff_config(directory: Path) -> Path:
    lines = ["[lint]", 'select = ["TID251"]', "[lint.flake8-tidy-imports.banned-api]"]
    lines += [f'"{name}".msg = "banned"' for name in banned_names()]
    path = directory / "ruff.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ruff() -> str:
    return shutil.which("ruff") or sys.exit("ruff is not installed (pip install ruff)")


_installed: list[str] = []


def corral() -> list[str]:
    """The ``corral`` command of a regular (wheel) install of this tree, as a user has it.

    A development venv holds an editable install, whose import hook costs every start-up
    ~20 ms (pathlib, urllib, ipaddress imported while ``site`` runs) that no user pays: the
    benchmarks would measure the dev set-up, not corral. So this tree is installed once per
    benchmark run into a throwaway venv (no download: no build isolation, no dependencies),
    which finds the dependencies in this venv's site-packages through a ``.pth`` line (a
    path added that way has its own ``.pth`` files, the editable hook's among them, ignored).
    """
    if _installed:
        return _installed
    import atexit
    import site

    root = Path(__file__).resolve().parent.parent
    venv = Path(tempfile.mkdtemp(prefix="corral-bench-venv-"))
    atexit.register(shutil.rmtree, venv, True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    build = Path(tempfile.mkdtemp(prefix="corral-bench-build-"))
    atexit.register(shutil.rmtree, build, True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-warn-script-location",
            "--target",
            purelib,
            str(root),
        ],
        check=True,
        cwd=build,
    )
    ours = {sysconfig.get_path("purelib"), *site.getsitepackages()}
    Path(purelib, "corral-bench-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    script = venv / "bin" / "corral"
    script.write_text(
        f"#!{python}\nimport sys\nfrom corral.lint_rules.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    _installed.append(str(script))
    return _installed


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"
