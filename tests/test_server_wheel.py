"""The language server works from the built wheel, not only from the editable install.

The wheel is built from this tree (no network: the build backend comes from the dev extra)
and installed without dependencies into a fresh virtual environment; the dependencies are
made importable from this environment by a ``.pth`` file, which adds the directory to
``sys.path`` without running its editable-install hook. The server tests then run with that
interpreter, so ``corral`` and the ``corral server`` script are the wheel's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from linthelpers import ROOT

SERVER_TESTS = ["tests/test_server.py"]


def _clean_env() -> dict[str, str]:
    """No coverage hooks of the outer run reach the inner one."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("COV_", "COVERAGE"))}


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    """This environment's pip, offline."""
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "-q", "--no-index"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(),
    )


def test_server_tests_pass_against_the_installed_wheel(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT))
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("corral-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = _pip("--python", str(python), "install", "--no-deps", str(wheel))
    assert installed.returncode == 0, installed.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "dev_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import corral, corral.lint_rules.server as s\nprint(corral.__file__, s.__file__)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert line.startswith(site), f"{line} is not the wheel's copy"
    assert (venv / "bin" / "corral").exists()

    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *SERVER_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=_clean_env(),
    )
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout
