"""The project-wide subclass index serves the entry points that check one file: the flake8
plugin (real flake8, in its worker processes) and ``--stdin-filename``; it is read from the
results cache, so only the first check of a project builds it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from corral.lint_rules.project import load_project
from corral.lint_rules.project_index import project_index, results_cache
from corral.lint_rules.runner import check_files
from linthelpers import run_corral
from test_subclass_index import _project

EXPECTED = [
    ("pkg/app.py", 5, "CRL101"),
    ("pkg/app.py", 6, "CRL102"),
    ("pkg/app.py", 11, "CRL101"),
    ("pkg/main.py", 3, "CRL101"),
]


def _flake8(root: Path, *args: str) -> list[tuple[str, int, str]]:
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "CRL", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    rows = []
    for line in result.stdout.splitlines():
        path, number, _, message = line.split(":", 3)
        rows.append((path.removeprefix("./"), int(number), message.split()[0]))
    return sorted(rows)


def test_flake8_sees_subclasses_defined_in_other_modules(tmp_path: Path) -> None:
    root = _project(tmp_path)
    files = ["pkg/app.py", "pkg/main.py", "pkg/lookalike.py", "pkg/fast.py"]
    assert _flake8(root, "-j", "1", *files) == EXPECTED
    assert list((root / ".corral_cache").glob("v*.json")), "the index is kept in the cache"
    # several worker processes (daemonic: they build the index in-process), cache now warm
    assert _flake8(root, "-j", "2", *files) == EXPECTED
    message = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "CRL", "pkg/main.py"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "instance of `Fast`, a subclass of `threading.Thread` via `Poller`" in message


def _stdin(root: Path, name: str, text: str, *extra: str) -> list[tuple[int, str]]:
    result = run_corral(
        "check",
        "--output-format",
        "json",
        *extra,
        "--stdin-filename",
        name,
        "-",
        cwd=root,
        stdin=text.encode(),
    )
    assert result.returncode in (0, 1), result.stderr
    return [(r["line"], r["code"]) for r in json.loads(result.stdout)]


def test_stdin_sees_subclasses_defined_in_other_modules(tmp_path: Path) -> None:
    root = _project(tmp_path)
    app = (root / "pkg/app.py").read_text()
    assert _stdin(root, "pkg/app.py", app) == [(5, "CRL101"), (6, "CRL102"), (11, "CRL101")]
    # an unsaved buffer, a file that is not on disk yet, and a cold run without the cache
    buffer = "from . import workers\nfrom .fast import Fast\n\nworkers.Crunch()\nFast()\n"
    assert _stdin(root, "pkg/new.py", buffer) == [(4, "CRL102"), (5, "CRL101")]
    assert _stdin(root, "pkg/new.py", buffer, "--no-cache") == [(4, "CRL102"), (5, "CRL101")]
    # look-alikes: a plain class of the module, a same-named class of another module
    lookalike = "from .workers import Plain\nfrom .other import Poller\n\nPlain()\nPoller()\n"
    assert _stdin(root, "pkg/new.py", lookalike) == []


def test_one_index_build_leaves_the_project_warm(tmp_path: Path) -> None:
    """A second single-file check reads the index from the cache: after one build, a check
    of the whole project parses nothing."""
    root = _project(tmp_path)
    project = load_project(root / "pyproject.toml")
    index = project_index(project, jobs=1)
    # defined, subclassed (pkg.fast) and re-exported by import (pkg.app, pkg.main)
    assert set(index) == {"pkg.workers", "pkg.fast", "pkg.app", "pkg.main"}
    assert index["pkg.fast"]["Fast"][:3] == ["CRL101", "threading.Thread", "Fast"]
    files = [(str(p), p) for p in sorted(root.rglob("*.py"))]
    again = check_files(files, project.rules, results_cache(project), jobs=1)
    assert (again.parsed, again.cached, again.files) == (0, len(files), len(files))
    assert again.index == index


def test_no_pyproject_no_walk(tmp_path: Path) -> None:
    """Without a project there is no index: nothing walks the directory a file sits in."""
    from corral.lint_rules.config import Config
    from corral.lint_rules.project import Project

    project = load_project(_project(tmp_path) / "pyproject.toml")
    stray = Project(Config(root=tmp_path), project.catalogue, project.rules, {})
    assert project_index(stray) == {}
    assert not (tmp_path / ".corral_cache").exists()
