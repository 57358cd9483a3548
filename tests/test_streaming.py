"""Files stream from discovery through the check to the report: what that must keep.

Memory itself is measured by benchmarks/lint_memory.py; these tests hold the streaming code
to the results of the code it replaced: every file once, allow-lists applied by real path,
and JSON output byte for byte what ``json.dump(rows, indent=2)`` writes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

from corral.lint_rules.cache import ResultCache
from corral.lint_rules.catalogue import load_catalogue
from corral.lint_rules.findings import Finding
from corral.lint_rules.reporters import replacement_for, report_json
from corral.lint_rules.runner import check_files
from hypothesis import given, settings
from hypothesis import strategies as st
from linthelpers import ruleset, run_corral

BAD = "import threading\nthreading.Thread(target=print)\n"
CATALOGUE = load_catalogue()


def _json_dump(findings: list[Finding]) -> str:
    rows = []
    for f in findings:
        row = f.to_dict()
        rule = CATALOGUE.get(f.code)
        row["rule"] = rule.name if rule else ""
        row["replacement"] = replacement_for(f, CATALOGUE)
        rows.append(row)
    out = io.StringIO()
    json.dump(rows, out, indent=2)
    return out.getvalue() + "\n"


texts = st.text(st.characters(codec="utf-8"), max_size=30)
findings = st.builds(
    Finding,
    path=texts,
    line=st.integers(0, 10**6),
    col=st.integers(0, 10**6),
    code=st.sampled_from(["CRL101", "CRL201", "CRL301", "CRL901", "XYZ1"]),
    message=texts,
    end_line=st.integers(0, 10**6),
    end_col=st.integers(0, 10**6),
    source=texts,
    qualname=texts,
    kind=st.sampled_from(["", "call", "dynamic"]),
    evades=st.sampled_from(["", "CRL201", "CRL999"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(findings, max_size=5))
def test_json_report_is_what_json_dump_writes(rows: list[Finding]) -> None:
    out = io.StringIO()
    report_json(rows, CATALOGUE, out)
    assert out.getvalue() == _json_dump(rows)


def test_overlapping_paths_give_each_file_once(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name in ("pkg/a.py", "pkg/sub/b.py"):
        (tmp_path / name).write_text(BAD)
    result = run_corral(
        "check",
        "--no-cache",
        "--output-format",
        "json",
        "pkg",
        "pkg/sub",
        "pkg/sub/b.py",
        ".",
        cwd=tmp_path,
    )
    assert sorted(r["path"] for r in json.loads(result.stdout)) == ["pkg/a.py", "pkg/sub/b.py"]


def test_an_allow_list_reaches_unreadable_files_and_warm_runs(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.corral]\n[tool.corral.allow]\nCRL101 = ["infra/**"]\nCRL901 = ["infra/**"]\n'
    )
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "pool.py").write_text(BAD)
    (tmp_path / "infra" / "gone.py").symlink_to(tmp_path / "nowhere.py")
    (tmp_path / "app.py").write_text(BAD)
    for _ in range(2):  # cold, then from the cache
        result = run_corral("check", "--output-format", "json", cwd=tmp_path)
        assert [(r["path"], r["code"]) for r in json.loads(result.stdout)] == [("app.py", "CRL101")]


def test_files_are_read_as_they_come(tmp_path: Path) -> None:
    """The runner takes files from an iterator one at a time (discovery is never listed
    first): each file exists only until the next one is asked for."""
    rules = ruleset()

    def files() -> Iterator[tuple[str, Path]]:
        for i in range(5):
            path = tmp_path / f"m{i}.py"
            path.write_text(BAD)
            yield path.name, path
            path.unlink()

    for cache in (ResultCache(None, "k"), ResultCache(tmp_path / "c", "k", b"s" * 32, tmp_path)):
        result = check_files(files(), rules, cache, jobs=1)
        assert [(f.path, f.code) for f in result.findings] == [
            (f"m{i}.py", "CRL101") for i in range(5)
        ]


def test_files_with_the_same_content_keep_their_own_names(tmp_path: Path) -> None:
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text(BAD)
    files = [(name, tmp_path / name) for name in ("a.py", "b.py", "c.py")]
    for cache in (ResultCache(None, "k"), ResultCache(tmp_path / "c", "k", b"s" * 32, tmp_path)):
        for jobs in (1, 2):
            result = check_files(files, ruleset(), cache, jobs=jobs)
            assert [f.path for f in result.findings] == ["a.py", "b.py", "c.py"]


def test_excluded_names_hold_below_every_starting_directory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.corral]\nextend-exclude = ["gen", "*.tmp"]\n')
    names = ["a.py", "gen/x.py", "sub/gen/y.py", "sub/z.py", "sub/w.tmp/v.py", "gen/in/u.py"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(BAD)

    def paths(*starts: str) -> list[str]:
        result = run_corral("check", "--no-cache", "--output-format", "json", *starts, cwd=tmp_path)
        return sorted(r["path"] for r in json.loads(result.stdout))

    assert paths(".") == ["a.py", "sub/z.py"]
    assert paths("sub") == ["sub/z.py"]
    assert paths("gen") == paths("gen/in") == paths("sub/gen") == []
    assert paths("gen/x.py") == ["gen/x.py"]  # a file named explicitly is checked
