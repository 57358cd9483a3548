"""The README's first commands, run as written: in a user's project and in a fresh clone.

Each block marked ``<!-- newcomer: NAME -->`` in the README is executed by bash in a fresh
virtual environment. The only substitution is where corral comes from: the README's
placeholder repository URL becomes a committed copy of this working tree, tagged the way the
release process tags a release, so the pinned ``rev:`` of the pre-commit snippet resolves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from test_precommit import _git, _snapshot_of_this_repo

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
PLACEHOLDER_REPO = "https://github.com/your-org/corral"

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
    # three fresh environments installed from scratch: minutes on a busy machine, so CI
    # (CI=true) runs them and a developer asks for them
    pytest.mark.skipif(
        os.environ.get("CI") != "true" and not os.environ.get("CORRAL_NEWCOMER_TESTS"),
        reason="installs fresh environments: runs under CI=true or CORRAL_NEWCOMER_TESTS=1",
    ),
]


def block(name: str) -> str:
    match = re.search(rf"<!-- newcomer: {name} -->\n```(\w+)\n(.*?)```", README, re.S)
    assert match, f"README has no block marked 'newcomer: {name}'"
    return match.group(2)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A committed copy of this tree, tagged ``v<version>`` like a release; (path, sha)."""
    repo = _snapshot_of_this_repo(tmp_path_factory.mktemp("release") / "corral")
    _git("tag", f"v{VERSION}", cwd=repo)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    return repo, sha


def run_block(script: str, cwd: Path, env_dir: Path) -> subprocess.CompletedProcess[str]:
    """``script`` under ``bash -e`` with a fresh venv first on PATH, as a user would have."""
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "COV_CORE"))}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def user_project(where: Path) -> Path:
    project = where / "service"
    (project / "src" / "service").mkdir(parents=True)
    (project / "src" / "service" / "__init__.py").write_text(
        "import corral\n\n\nasync def handler(user_id: int) -> None:\n"
        "    corral.spawn(print, user_id)\n"
    )
    (project / "pyproject.toml").write_text('[project]\nname = "service"\nversion = "1"\n')
    return project


def test_the_first_commands_work_in_a_users_project(
    tmp_path: Path, release: tuple[Path, str]
) -> None:
    repo, sha = release
    script = block("project")
    assert f"{PLACEHOLDER_REPO}@COMMIT_SHA" in script
    script = script.replace(f"{PLACEHOLDER_REPO}@COMMIT_SHA", f"file://localhost{repo}@{sha}")
    project = user_project(tmp_path)
    result = run_block(script, project, tmp_path / "venv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout


def test_the_first_commands_work_in_a_fresh_clone(
    tmp_path: Path, release: tuple[Path, str]
) -> None:
    repo, _ = release
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    result = run_block(block("clone"), clone, tmp_path / "venv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout


def test_the_pre_commit_snippet_runs_as_written(tmp_path: Path, release: tuple[Path, str]) -> None:
    repo, _ = release
    snippet = block("pre-commit")
    config = yaml.safe_load(snippet)
    [entry] = config["repos"]
    assert entry["repo"] == PLACEHOLDER_REPO and entry["rev"] == f"v{VERSION}"
    project = user_project(tmp_path)
    (project / "src" / "service" / "jobs.py").write_text(
        "import asyncio\n\n\nasync def main():\n    asyncio.create_task(work())\n"
    )
    (project / ".pre-commit-config.yaml").write_text(snippet.replace(PLACEHOLDER_REPO, str(repo)))
    _git("init", "-q", cwd=project)
    _git("add", "-A", cwd=project)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # the hooks ran at the pinned rev and found the task
    assert "jobs.py:5:5: CRL201" in output
    assert "files were modified by this hook" in output  # corral-fix rewrote it
    assert "corral.spawn(work)" in (project / "src" / "service" / "jobs.py").read_text()
