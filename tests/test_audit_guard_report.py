"""corral audit --guard-report: the run-time guard's counts beside the linter's findings.

The report file is written by the real pytest plugin (report mode) on a small sample
project, then read by ``corral audit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corral.lint_rules.cli import _load_plugins, main

# Load the subcommand modules now: pytester restores sys.modules after each test, and a
# subcommand module imported again would register its commands a second time.
_load_plugins()

SAMPLE = """\
import threading

def test_starts_threads():
    for _ in range(3):
        t = threading.Thread(target=print, args=("",))
        t.start()  # SPAWN
        t.join()
"""


@pytest.fixture
def guard_report(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_sample=SAMPLE)
    out = pytester.path / "guard.json"
    result = pytester.runpytest("--corral-guard=report", f"--corral-guard-report={out}")
    result.assert_outcomes(passed=1)
    return out


def audit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", "--no-cache", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_audit_json_and_markdown_show_the_guard_counts(
    guard_report: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(guard_report.parent)
    code, out, _ = audit(capsys, "--format", "json", "--guard-report", str(guard_report))
    assert code == 0
    runtime: dict[str, Any] = json.loads(out)["runtime"]
    assert runtime["raw_spawns"] == 3 and runtime["sites"] == 1 and runtime["tests"] == 1
    assert runtime["by_package"] == {"test_sample": 3}
    assert runtime["spawns"][0]["site"] == "test_sample.py:6"
    code, out, _ = audit(capsys, "--guard-report", str(guard_report))
    assert code == 0
    assert "## Raw concurrency seen at run time" in out
    assert "| test_sample | thread | test_sample.py:6 | - | 3 |" in out


def test_a_bad_guard_report_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        "missing.json": ("", "cannot read it"),
        "broken.json": ("{", "not JSON"),
        "other.json": ('{"format": "sarif"}', "not a corral guard report"),
        "rows.json": ('{"format": "corral-guard-report", "spawns": {}}', "must be a list"),
        "row.json": (
            '{"format": "corral-guard-report", "spawns": [{"kind": "task"}]}',
            "spawns[0] needs kind, package, site",
        ),
    }
    for name, (text, message) in cases.items():
        if text:
            (tmp_path / name).write_text(text)
        code, out, err = audit(capsys, "--guard-report", name)
        assert code == 2, name
        assert out == ""
        assert err.startswith(f"corral: error: --guard-report {name}: ") and message in err, err
        assert "Traceback" not in err


def test_an_empty_guard_report_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.json").write_text('{"format": "corral-guard-report", "spawns": [], "tests": 4}')
    code, out, _ = audit(capsys, "--guard-report", "g.json")
    assert code == 0
    assert "over 4 tests: 0 raw spawn(s) at 0 call site(s)" in out and "No raw spawns." in out
