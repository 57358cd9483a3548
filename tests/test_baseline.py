"""corral baseline: entries survive line shifts, count duplicates, report renames and stale debt."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from corral.lint_rules.cli import main

LEGACY = """\
import asyncio


async def poll():
    pass


async def start():
    asyncio.create_task(poll())
    asyncio.create_task(poll())
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "jobs.py").write_text(LEGACY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def entries(root: Path, name: str = ".corral-baseline.json") -> list[dict[str, object]]:
    data = json.loads((root / name).read_text())
    assert data["version"] == 1
    return list(data["entries"])


def test_baseline_file_is_sorted_keyed_by_text_and_0644(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "a.py").write_text("import threading\nthreading.Thread(target=print).start()\n")
    old = os.umask(0o077)  # the file mode must not depend on the caller's umask
    try:
        code, _, err = run("baseline", capsys=capsys)
    finally:
        os.umask(old)
    assert code == 0
    path = repo / ".corral-baseline.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "3 entries (3 added, 0 removed)" in err
    rows = entries(repo)
    assert rows == sorted(rows, key=lambda r: (r["path"], r["code"], r["line"], r["occurrence"]))
    assert rows[0] == {
        "code": "CRL101",
        "line": "threading.Thread(target=print).start()",
        "occurrence": 0,
        "path": "a.py",
    }
    jobs = [r for r in rows if r["path"] == "svc/jobs.py"]
    assert [r["occurrence"] for r in jobs] == [0, 1]  # two identical lines, counted
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "entries": [\n    {\n' in text  # one key per line
    # rewriting an unchanged project gives a byte-identical file (no churn in diffs)
    run("baseline", capsys=capsys)
    assert path.read_text() == text


def test_check_passes_with_baseline_and_survives_line_shifts(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", "--no-cache", capsys=capsys)[0] == 1
    run("baseline", capsys=capsys)
    assert run("check", "--no-cache", capsys=capsys)[0] == 0
    shifted = '"""Docstring added above."""\n\n\n' + LEGACY.replace(
        "async def start():\n", "async def start():\n    # a new comment\n\n    x = 1\n"
    )
    (repo / "svc" / "jobs.py").write_text(shifted)
    code, out, err = run("check", "--no-cache", capsys=capsys)
    assert code == 0, out
    assert "stale" not in err
    # re-indenting a baselined line is not a change either
    (repo / "svc" / "jobs.py").write_text(
        shifted.replace(
            "    asyncio.create_task(poll())\n",
            "    if x:\n        asyncio.create_task(poll())\n",
            1,
        )
    )
    assert run("check", "--no-cache", capsys=capsys)[0] == 0


def test_only_new_findings_fail_and_are_reported(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("baseline", capsys=capsys)
    with (repo / "svc" / "jobs.py").open("a") as f:
        f.write("    asyncio.ensure_future(poll())\n")
    code, out, _ = run("check", "--no-cache", capsys=capsys)
    assert code == 1
    assert out.splitlines()[0].startswith("svc/jobs.py:11:5: CRL202")
    assert "Found 1 finding" in out
    code, out, _ = run("check", "--no-cache", "--no-baseline", capsys=capsys)
    assert code == 1 and "Found 3 findings" in out


def test_duplicate_identical_lines_are_counted_by_occurrence(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("baseline", capsys=capsys)
    third = LEGACY + "    asyncio.create_task(poll())\n"
    (repo / "svc" / "jobs.py").write_text(third)
    code, out, _ = run("check", "--no-cache", capsys=capsys)
    assert code == 1 and "Found 1 finding" in out  # the third copy is new
    one = LEGACY.replace("    asyncio.create_task(poll())\n", "", 1)
    (repo / "svc" / "jobs.py").write_text(one)
    code, out, err = run("check", "--no-cache", capsys=capsys)
    assert code == 0
    assert "stale: 1, run corral baseline --prune" in err


def test_rename_reports_stale_and_new(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The key holds the path: a moved file is two stale entries plus two new findings."""
    run("baseline", capsys=capsys)
    (repo / "svc" / "jobs.py").rename(repo / "svc" / "tasks.py")
    code, out, err = run("check", "--no-cache", capsys=capsys)
    assert code == 1
    assert "stale: 2, run corral baseline --prune" in err
    assert [line.split(":")[0] for line in out.splitlines()[:2]] == ["svc/tasks.py"] * 2


def test_prune_drops_paid_debt_and_adds_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("baseline", capsys=capsys)
    (repo / "svc" / "jobs.py").write_text(
        LEGACY.replace("    asyncio.create_task(poll())\n", "", 1)
        + "    asyncio.ensure_future(poll())\n"
    )
    code, _, err = run("baseline", "--prune", capsys=capsys)
    assert code == 0
    assert "1 entries (0 added, 1 removed)" in err
    assert "1 new findings were not added" in err
    assert [r["code"] for r in entries(repo)] == ["CRL201"]
    code, _, err = run("check", "--no-cache", capsys=capsys)
    assert code == 1 and "stale" not in err


def test_checking_part_of_the_tree_does_not_call_the_rest_stale(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "other.py").write_text("import threading\nthreading.Thread(target=print).start()\n")
    run("baseline", capsys=capsys)
    code, _, err = run("check", "--no-cache", "svc/jobs.py", capsys=capsys)
    assert code == 0 and "stale" not in err
    # and a partial `corral baseline` keeps the entries of files it did not look at
    run("baseline", "svc", capsys=capsys)
    assert {r["path"] for r in entries(repo)} == {"other.py", "svc/jobs.py"}


def test_configured_and_explicit_baseline_paths(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "pyproject.toml").write_text('[tool.corral]\nbaseline = "ci/corral-baseline.json"\n')
    run("baseline", capsys=capsys)
    assert (repo / "ci" / "corral-baseline.json").is_file()
    assert not (repo / ".corral-baseline.json").exists()
    assert run("check", "--no-cache", capsys=capsys)[0] == 0
    code, _, err = run("check", "--baseline", "missing.json", capsys=capsys)
    assert code == 2 and "baseline file not found: missing.json" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "baseline is not valid JSON (line 1)"),
        ('{"version": 1}', "not a corral baseline"),
        ('{"version": 7, "entries": []}', "format version 7 is not supported"),
        ('{"version": 1, "entries": [{"path": "a.py"}]}', "entries[0] must have path, code"),
    ],
)
def test_broken_baseline_is_one_clear_error(
    repo: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (repo / ".corral-baseline.json").write_text(content)
    code, _, err = run("check", "--no-cache", capsys=capsys)
    assert code == 2
    assert err.startswith("corral: error: ") and message in err
    assert "Traceback" not in err


def test_stdin_check_uses_the_baseline(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run("baseline", capsys=capsys)
    source = LEGACY + "    asyncio.ensure_future(poll())\n"

    class Stdin:
        buffer = io.BytesIO(source.encode())

    monkeypatch.setattr("sys.stdin", Stdin)
    code, out, _ = run("check", "--stdin-filename", "svc/jobs.py", "-", capsys=capsys)
    assert code == 1
    assert out.startswith("svc/jobs.py:11:5: CRL202") and "Found 1 finding" in out


def test_line_text_follows_the_file_encoding_and_newlines(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = "# -*- coding: latin-1 -*-\nimport asyncio\nasyncio.ensure_future(café())\n"
    (repo / "legacy.py").write_bytes(latin.encode("latin-1"))
    (repo / "dos.py").write_bytes(b"import asyncio\r\n\r\nasyncio.ensure_future(x())\r\n")
    (repo / "bom.py").write_bytes(b"\xef\xbb\xbfimport asyncio\nasyncio.ensure_future(y())\n")
    run("baseline", "legacy.py", "dos.py", "bom.py", capsys=capsys)
    lines = {r["path"]: r["line"] for r in entries(repo)}
    assert lines == {
        "bom.py": "asyncio.ensure_future(y())",
        "dos.py": "asyncio.ensure_future(x())",
        "legacy.py": "asyncio.ensure_future(café())",
    }
    assert run("check", "--no-cache", "legacy.py", "dos.py", "bom.py", capsys=capsys)[0] == 0
