"""The CI scripts under .ci/: what they install, pin and claim.

The package metadata claims the Pythons CI runs; the floors file pins exactly the declared
minimums; a system package that cannot be installed fails CI in one line (and apt being busy
is waited for); a chroot is never deleted while something is mounted inside it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def ci_pythons() -> set[str]:
    """The interpreters .ci/run tests: the machine's 3.11 and one per chroot of .ci/pythons."""
    script = (CI / "pythons").read_text(encoding="utf-8")
    chroots = set(re.findall(r"^\s+\w+\) echo python(3\.\d+) ;;$", script, re.MULTILINE))
    assert chroots, "no suite -> python mapping found in .ci/pythons"
    run = (CI / "run").read_text(encoding="utf-8")
    assert "for suite in trixie sid; do" in run
    return {"3.11", *chroots}


def test_metadata_claims_exactly_the_pythons_ci_runs() -> None:
    project = PYPROJECT["project"]
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert claimed == ci_pythons() == {"3.11", "3.13", "3.14"}
    assert project["requires-python"] == ">=3.11"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == "3.11"


def floors(pyproject: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CI / "floors.py"), pyproject],
        capture_output=True,
        text=True,
        check=False,
    )


def test_floors_pin_every_runtime_dependency_at_its_minimum(tmp_path: Path) -> None:
    result = floors(str(ROOT / "pyproject.toml"))
    assert result.returncode == 0, result.stderr
    pins = dict(line.split("==", 1) for line in result.stdout.split())
    declared = {
        re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]: r for r in PYPROJECT["project"]["dependencies"]
    }
    assert set(pins) == set(declared)
    for name, floor in pins.items():
        assert f">={floor}" in declared[name]
    # anyio.from_thread.run_sync(token=) and anyio.lowlevel.current_token came in 4.11
    assert tuple(int(p) for p in pins["anyio"].split(".")) >= (4, 11)

    toml = tmp_path / "pyproject.toml"
    toml.write_text(
        '[project]\nname = "x"\ndependencies = ["a>=1.2,<2", "b[extra] >= 3 ; '
        'python_version < \'3.12\'", "c"]\n'
    )
    result = floors(str(toml))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {toml}: c has no '>=' floor ('c')"
    toml.write_text('[project]\nname = "x"\ndependencies = ["a>=1.2,<2", "b[extra] >= 3 ; x"]\n')
    assert floors(str(toml)).stdout.split("\n") == ["a==1.2", "b==3; x", ""]


def system_packages(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", str(CI / "system-packages"), "--no-update", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


MISSING = "corral-no-such-command:corral-no-such-package"


@as_root
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian machine")
def test_a_package_that_cannot_be_installed_fails_ci_in_one_line() -> None:
    proc = system_packages(MISSING, CI="true")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert err.splitlines() == [
        "error: cannot install system packages corral-no-such-package: "
        "E: Unable to locate package corral-no-such-package"
    ]
    proc = system_packages(MISSING, CI="")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0  # on a developer's machine the tests that need it say so
    assert err.startswith("warning: cannot install system packages corral-no-such-package (")
    proc = system_packages("sh:no-package-needed", CI="true")
    assert proc.communicate(timeout=60) == ("", "")
    assert proc.returncode == 0


@as_root
@pytest.mark.skipif(not Path("/var/lib/dpkg/lock-frontend").exists(), reason="no dpkg lock")
def test_apt_busy_is_waited_for_not_failed() -> None:
    """Another process holds dpkg's lock for a few seconds: the install waits, then proceeds."""
    fd = os.open("/var/lib/dpkg/lock-frontend", os.O_RDWR)
    try:
        deadline = time.monotonic() + 120
        while True:  # someone else's apt may hold it right now
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                assert time.monotonic() < deadline, "dpkg lock busy for 2 minutes"
                time.sleep(1)
        proc = system_packages(MISSING, CI="true", CORRAL_APT_LOCK_TIMEOUT="120")
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
    finally:
        os.close(fd)  # releases the lock
    _, err = proc.communicate(timeout=300)
    # it got the lock and got as far as looking the package up
    assert "Unable to locate package corral-no-such-package" in err, err
    assert "Could not get lock" not in err


@as_root
def test_a_chroot_is_deleted_only_after_what_is_mounted_in_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mounted = cache / "sid" / "dev"
    mounted.mkdir(parents=True)
    keep = tmp_path / "host-dev"
    keep.mkdir()
    (keep / "precious").write_text("host data")
    subprocess.run(["mount", "--bind", str(keep), str(mounted)], check=True)
    try:
        assert (mounted / "precious").exists()
        result = subprocess.run(
            ["bash", str(CI / "pythons"), "clean", "sid"],
            env={**os.environ, "CORRAL_PYTHONS_CACHE": str(cache)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    finally:
        if os.path.ismount(mounted):
            subprocess.run(["umount", "-l", str(mounted)], check=False)
    assert not (cache / "sid").exists()
    assert (keep / "precious").read_text() == "host data"  # unmounted, not deleted through


def test_run_fails_when_pytest_collects_nothing_and_uses_the_readmes_command() -> None:
    run = (CI / "run").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```bash\npytest --cov\n```" in readme
    assert "run_pytest pytest --cov\n" in run
    assert '[ "$rc" -eq 5 ]' in run
    assert "DPkg::Lock::Timeout" in (CI / "system-packages").read_text(encoding="utf-8")
