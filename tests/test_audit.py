"""corral audit: the governance report, in Markdown for reviewers and JSON for tooling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corral.lint_rules.catalogue import load_catalogue
from corral.lint_rules.cli import main

PYPROJECT = """\
[tool.corral]
rules-version = "1.0"
allow = { CRL101 = ["infra/**"] }
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    for package in ("billing", "search", "infra"):
        (tmp_path / package).mkdir()
    (tmp_path / "billing" / "jobs.py").write_text(
        "import asyncio\n\n"
        "async def charge():\n"
        "    asyncio.create_task(charge())\n"
        "    asyncio.create_task(charge())\n"
    )
    (tmp_path / "search" / "index.py").write_text(
        "import threading\n"
        "threading.Thread(target=print).start()"
        '  # corral: allow[CRL101] reason="one-off warm-up, exits with the process"\n'
        "threading.Thread(target=print).start()  # noqa: CRL101\n"
    )
    (tmp_path / "infra" / "pool.py").write_text(
        "import threading\nthreading.Thread(target=print).start()\n"
    )
    (tmp_path / "tool.py").write_text("import asyncio\nasyncio.ensure_future(x())\n")
    (tmp_path / "sneaky.py").write_text('import threading\ngetattr(threading, "Thread")\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def audit_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["audit", "--no-cache", "--format", "json", *argv]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_json_report_counts_findings_debt_and_suppressions(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # accept the billing debt, then add one more finding there
    assert main(["baseline", "billing"]) == 0
    with (repo / "billing" / "jobs.py").open("a") as f:
        f.write("    asyncio.ensure_future(charge())\n")
    capsys.readouterr()
    report = audit_json(capsys)
    catalogue = load_catalogue()
    assert report["catalogue"]["version"] == catalogue.version
    assert report["catalogue"]["pinned_to"] == "1.0"
    summary = report["summary"]
    assert summary["baselined_findings"] == 2
    assert summary["new_findings"] == 3  # billing's ensure_future, tool.py's, sneaky's lookup
    assert summary["suppressions"] == 2 and summary["suppressions_without_reason"] == 1
    rules = {r["code"]: r for r in report["rules"]}
    assert set(rules) == {rule.code for rule in catalogue}
    assert rules["CRL201"]["baselined_findings"] == 2 and rules["CRL201"]["new_findings"] == 0
    assert rules["CRL202"]["new_findings"] == 2
    assert rules["CRL301"]["new_findings"] == 1
    # the evaded rule comes from the finding's typed field
    assert rules["CRL101"]["evaded_dynamically"] == 1 and rules["CRL202"]["evaded_dynamically"] == 0
    assert rules["CRL101"]["exempt_paths"] == ["infra/**"]
    assert rules["CRL204"]["enforced"] is False  # strict level is off
    for code, rule in rules.items():
        assert rule["cwe"] == list(catalogue.rules[code].cwe)
        assert rule["owasp"] == list(catalogue.rules[code].owasp)
    assert report["packages"] == {
        "billing": {"new": 1, "baselined": 2},
        "sneaky": {"new": 1, "baselined": 0},
        "tool": {"new": 1, "baselined": 0},
    }
    sups = report["suppressions"]
    assert [(s["path"], s["line"], s["kind"], s["codes"]) for s in sups] == [
        ("search/index.py", 2, "allow", ["CRL101"]),
        ("search/index.py", 3, "noqa", ["CRL101"]),
    ]
    assert sups[0]["reason"] == "one-off warm-up, exits with the process"
    assert sups[1]["reason"] == ""
    assert report["baseline"]["by_rule"] == {"CRL201": 2}
    assert report["exemptions"] == {"CRL101": ["infra/**"]}


def test_markdown_report_reads_without_code(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Concurrency policy audit\n")
    for heading in (
        "## Summary",
        "## What is enforced, and why",
        "## Findings by rule",
        "## Findings by top-level package",
        "## Exceptions granted in code",
        "## Exempted paths (configuration)",
        "## Baseline debt",
    ):
        assert f"\n{heading}\n" in text
    catalogue = load_catalogue()
    assert f"rule catalogue **{catalogue.version}**, pinned to 1.0" in text
    assert "The CI gate currently **FAILS**: 4 new violations." in text
    assert "| search/index.py:2 | CRL101 | one-off warm-up, exits with the process |" in text
    assert "| search/index.py:3 | CRL101 | **no reason given** |" in text
    assert "| CRL101 | infra/** |" in text
    assert "| CRL201 asyncio-create-task | 2 | 0 | 0 |" in text
    assert "| CRL101 raw-thread | 0 | 0 | 1 |" in text  # reached only through getattr
    assert "| billing | 2 | 0 |" in text
    for rule in catalogue:
        assert f"| {rule.code} {rule.name} |" in text
        for cwe in rule.cwe:
            assert cwe in text
    assert "No baseline: every finding counts." in text


def test_report_to_file_and_scope(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = repo / "audit.md"
    assert main(["audit", "--no-cache", "billing", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    text = out.read_text()
    assert "for: billing." in text
    assert "search/index.py" not in text
