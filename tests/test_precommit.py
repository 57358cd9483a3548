"""The pre-commit hooks, run for real with ``pre-commit try-repo``, and the example CI workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_HINTS = (
    "Could not find a version that satisfies",
    "No matching distribution found",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
)
BAD = "import asyncio\n\n\nasync def main():\n    asyncio.create_task(work(1))\n"


def test_hook_definitions() -> None:
    hooks = {
        hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    }
    assert set(hooks) == {"corral", "corral-fix"}
    # pre-commit names every staged file: --force-exclude keeps `exclude` in force for them
    assert hooks["corral"]["entry"] == "corral check --force-exclude"
    assert hooks["corral-fix"]["entry"] == "corral fix --force-exclude"
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["types"] == ["python"]


def test_github_workflow_runs_the_gate_and_uploads_sarif() -> None:
    workflow = yaml.safe_load((ROOT / "deploy" / "github" / "corral.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "pull_request" in triggers and "push" in triggers
    assert workflow["permissions"]["security-events"] == "write"
    (job,) = workflow["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    runs = [step.get("run", "") for step in steps]
    assert "pip install corral" in runs
    scan = runs.index("corral check --no-cache --output-format sarif --exit-zero > corral.sarif")
    upload = next(
        i for i, u in enumerate(uses) if u.startswith("github/codeql-action/upload-sarif@")
    )
    assert steps[upload]["with"]["sarif_file"] == "corral.sarif"
    assert steps[upload]["if"] == "always()"
    gate = runs.index("corral check --no-cache --output-format github")
    assert uses.index(next(u for u in uses if u.startswith("actions/setup-python@"))) < scan
    assert scan < upload < gate  # scan, upload even on failure, then fail the job


def _git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "corral tests",
        "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "corral tests",
        "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _snapshot_of_this_repo(dest: Path) -> Path:
    """A committed copy of the working tree: try-repo clones HEAD, not uncommitted files."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    _git("init", "-q", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-q", "-m", "snapshot", cwd=dest)
    return dest


def _try_repo(repo: Path, hook: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(repo), hook, "--all-files"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_pre_commit_try_repo_runs_both_hooks(tmp_path: Path) -> None:
    source = _snapshot_of_this_repo(tmp_path / "corral")
    target = tmp_path / "service"
    target.mkdir()
    _git("init", "-q", cwd=target)
    (target / "bad.py").write_text(BAD)
    (target / "good.py").write_text("print('no concurrency here')\n")
    (target / "notes.txt").write_text("asyncio.create_task(x())\n")  # not python: not passed
    (target / "vendor").mkdir()
    (target / "vendor" / "lib.py").write_text(BAD)  # excluded: passed, but skipped
    (target / "pyproject.toml").write_text('[tool.corral]\nextend-exclude = ["vendor/"]\n')
    _git("add", "-A", cwd=target)
    home = tmp_path / "pre-commit-home"

    check = _try_repo(source, "corral", target, home)
    output = check.stdout + check.stderr
    if check.returncode != 0 and any(hint in output for hint in OFFLINE_HINTS):
        pytest.skip("pre-commit could not build the hook environment offline:\n" + output[-2000:])
    assert check.returncode == 1, output
    assert "bad.py:5:5: CRL201" in output
    assert "good.py" not in output
    assert "notes.txt" not in output
    assert "vendor" not in output

    fix = _try_repo(source, "corral-fix", target, home)
    output = fix.stdout + fix.stderr
    assert fix.returncode == 1, output  # pre-commit fails a hook that modified files
    assert "files were modified by this hook" in output
    assert (target / "bad.py").read_text() == (
        "import corral\n\n\nasync def main():\n    corral.spawn(work, 1)\n"
    )
    assert (target / "vendor" / "lib.py").read_text() == BAD
    again = _try_repo(source, "corral", target, home)
    assert again.returncode == 0, again.stdout + again.stderr
