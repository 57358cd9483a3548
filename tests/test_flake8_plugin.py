"""The flake8 plugin, run through the real flake8 executable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def flake8(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flake8", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plugin_reports_with_flake8_format_and_honours_noqa(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import asyncio\n"
        "asyncio.create_task(job())\n"
        "asyncio.ensure_future(job())  # noqa: CRL202\n"
        "asyncio.create_task(job())  # corral: allow[CRL201] reason='owned by close()'\n"
    )
    result = flake8("--select", "CRL", "a.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "a.py:2:1: CRL201 `asyncio.create_task`: spawns a task nobody owns "
        "(use: corral.spawn / corral.TaskQueue.submit / corral.TaskGroup.start_soon)"
    ]


def test_plugin_uses_the_same_project_configuration(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.corral]\nignore = ["CRL201"]\n')
    (tmp_path / "a.py").write_text("import asyncio\nasyncio.create_task(job())\n")
    result = flake8("--select", "CRL", "a.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plugin_is_registered_under_crl() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--version"], capture_output=True, text=True, timeout=60
    )
    assert "corral" in result.stdout


def test_plugin_resolves_packs_and_organisation_rules_like_the_cli(tmp_path: Path) -> None:
    from test_policy import ORG_RULES

    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "rules.yaml").write_text(ORG_RULES)
    (tmp_path / "org" / "policy.toml").write_text(
        'rule-files = ["rules.yaml"]\nno-suppress = ["CRL201"]\n'
    )
    (tmp_path / "pyproject.toml").write_text('[tool.corral]\nextends = "org/policy.toml"\n')
    (tmp_path / "a.py").write_text(
        "import asyncio\n"
        "from sched import scheduler as Every\n"
        "Every()\n"
        "asyncio.create_task(job())  # corral: allow[CRL201] reason='kept'\n"
    )
    result = flake8("--select", "CRL,ORG", "a.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    codes = [line.split()[1] for line in result.stdout.splitlines()]
    assert codes == ["ORG101", "ORG101", "CRL201", "CRL904"]
