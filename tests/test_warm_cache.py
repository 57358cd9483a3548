"""What a warm run may reuse, and what it must notice.

A file's stat record (size, mtime, ctime, inode) saves reading it again; a run whose files all
hit reads the project-wide index pass's outcome back under a key naming every file's path,
content and package. These tests hold both to "reused only when nothing they depend on
changed", and show that damaged records are only a slower run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from corral.lint_rules.cache import CACHE_FORMAT, ResultCache
from linthelpers import run_corral

WORKERS = "import threading\n\n\nclass Poller(threading.Thread):\n    pass\n"
APP = "from .workers import Poller\n\nPoller().start()\n"
QUIET = "import asyncio\nasyncio.create_thing(x)\n"
LOUD = "import asyncio\nasyncio.create_task(xy)\n"  # the same size


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _age(root: Path) -> None:
    """Every file a minute old, so no stat record falls in the racy window."""
    old = time.time() - 60
    for path in root.rglob("*.py"):
        os.utime(path, (old, old))


def _check(root: Path, *args: str) -> list[tuple[str, int, str]]:
    result = run_corral("check", "--output-format", "json", *args, cwd=root)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return [(r["path"], r["line"], r["code"]) for r in json.loads(result.stdout)]


def _cache_file(root: Path) -> Path:
    (path,) = (root / ".corral_cache").glob(f"v{CACHE_FORMAT}-*.json")
    return path


def _tables(root: Path) -> dict[str, object]:
    """The cache file's first line after the signature: every table but the import facts."""
    data = json.loads(_cache_file(root).read_bytes().split(b"\n")[1])
    assert isinstance(data, dict)
    return data


def _rewrite(root: Path, change: dict[str, object]) -> None:
    """Change tables of the cache and sign it again with this user's key, as only corral
    itself could: what a wrong record would do if corral had written it. ``facts`` is the
    second line's text (a value that is not text: as JSON)."""
    path = _cache_file(root)
    _, tables, facts = path.read_bytes().split(b"\n")
    data = json.loads(tables)
    if "facts" in change:
        value = change.pop("facts")
        facts = (value if isinstance(value, str) else json.dumps(value)).encode()
    data.update(change)
    body = json.dumps(data).encode() + b"\n" + facts
    path.write_bytes(ResultCache(root / ".corral_cache", "k")._mac(body) + b"\n" + body)


def _project(root: Path) -> Path:
    _write(
        root,
        {
            "pyproject.toml": "[tool.corral]\n",
            "pkg/__init__.py": "",
            "pkg/workers.py": WORKERS,
            "pkg/app.py": APP,
        },
    )
    _age(root)
    return root


def test_an_edit_keeping_size_and_mtime_is_noticed(tmp_path: Path) -> None:
    root = tmp_path
    _write(root, {"pyproject.toml": "[tool.corral]\n", "a.py": QUIET})
    _age(root)
    before = (root / "a.py").stat()
    assert _check(root) == []
    assert _check(root) == []  # served from the stat record
    # same size, mtime put back (``touch -r``, an editor's "preserve timestamps"): the ctime
    # moves, and the edit is seen
    (root / "a.py").write_text(LOUD)
    assert (root / "a.py").stat().st_size == before.st_size
    os.utime(root / "a.py", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _check(root) == [("a.py", 2, "CRL201")]


def test_a_file_replaced_by_another_with_the_same_stamp_is_noticed(tmp_path: Path) -> None:
    root = tmp_path
    _write(root, {"pyproject.toml": "[tool.corral]\n", "a.py": QUIET})
    _age(root)
    before = (root / "a.py").stat()
    assert _check(root) == [] and _check(root) == []
    (root / "new.tmp").write_text(LOUD)
    os.utime(root / "new.tmp", ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(root / "new.tmp", root / "a.py")  # what a checkout does
    assert _check(root) == [("a.py", 2, "CRL201")]


def test_a_warm_run_reads_the_index_pass_back(tmp_path: Path) -> None:
    root = _project(tmp_path)
    cold = _check(root)
    assert ("pkg/app.py", 3, "CRL101") in cold
    assert _check(root) == cold
    data = _tables(root)
    ((key, (finals, index)),) = data["runs"].items()  # type: ignore[attr-defined]
    assert "Poller" in index["pkg.workers"]
    # point app.py's recorded outcome at workers.py's findings: served verbatim, so the
    # warm run really reads the record instead of redoing the pass
    stats = data["stats"]
    assert isinstance(stats, dict)
    digests = {Path(path).name: record[-1] for path, record in stats.items()}
    (position, _) = finals[0]
    _rewrite(root, {"runs": {key: [[[position, digests["workers.py"]]], index]}})
    served = _check(root)
    assert ("pkg/app.py", 4, "CRL101") in served and ("pkg/app.py", 3, "CRL101") not in served


def test_the_recorded_outcome_depends_on_every_file(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert ("pkg/app.py", 3, "CRL101") in _check(root)
    (root / "pkg" / "workers.py").write_text(WORKERS.replace("(threading.Thread)", "(object)"))
    assert ("pkg/app.py", 3, "CRL101") not in _check(root)
    (root / "pkg" / "workers.py").write_text(WORKERS)
    assert ("pkg/app.py", 3, "CRL101") in _check(root)
    (root / "pkg" / "other.py").write_text("class Poller:\n    pass\n")  # a new file
    (root / "pkg" / "app.py").write_text(APP.replace(".workers", ".other"))
    assert ("pkg/app.py", 3, "CRL101") not in _check(root)


def test_the_recorded_outcome_depends_on_the_packages(tmp_path: Path) -> None:
    """Named explicitly, the files' package comes from an ``__init__.py`` that is not one of
    them: creating it changes what ``from .workers import`` reads, with every file a hit."""
    root = _project(tmp_path)
    (root / "pkg" / "__init__.py").unlink()
    files = ("pkg/app.py", "pkg/workers.py")
    assert ("pkg/app.py", 3, "CRL101") not in _check(root, *files)
    assert ("pkg/app.py", 3, "CRL101") not in _check(root, *files)
    (root / "pkg" / "__init__.py").write_text("")
    assert ("pkg/app.py", 3, "CRL101") in _check(root, *files)


@pytest.mark.parametrize(
    "runs",
    [
        5,
        [1],
        {"x": 5},
        "RUN:[5]",
        "RUN:[[[0]], {}]",
        'RUN:[[["0", "d"]], {}]',
        'RUN:[[[99, "d"]], {}]',
        'RUN:[[[0, "missing"]], {}]',
        'RUN:[[], {"m": 5}]',
        'RUN:[[], {"m": {"P": [5]}}]',
        "RUN:[[], []]",
    ],
)
def test_a_malformed_run_record_is_only_a_slower_run(tmp_path: Path, runs: object) -> None:
    root = _project(tmp_path)
    cold = _check(root)
    if isinstance(runs, str) and runs.startswith("RUN:"):
        recorded = _tables(root)["runs"]
        assert isinstance(recorded, dict)
        runs = {key: json.loads(runs[4:]) for key in recorded}
    _rewrite(root, {"runs": runs})
    assert _check(root) == cold


@pytest.mark.parametrize("facts", ["{not json", "[1]", '{"d": 5}', {}, '{"d": [{}, 5]}'])
def test_missing_import_facts_are_computed_again(tmp_path: Path, facts: object) -> None:
    """A stat hit trusts the findings; the import facts are read only when the index pass
    runs, and a file whose facts are gone is checked again then."""
    root = _project(tmp_path)
    cold = _check(root)
    _rewrite(root, {"facts": facts, "runs": {}})
    assert _check(root) == cold
    assert _check(root) == cold


def test_packages_per_directory_agree_with_package_of(tmp_path: Path) -> None:
    """The run key and the index pass ask each directory's ``__init__.py`` once; that must
    name the same package ``packages.package_of`` walks up to, file by file."""
    import sysconfig

    from corral.lint_rules.packages import package_of
    from corral.lint_rules.runner import _Packages

    for name in ("a/__init__.py", "a/b/__init__.py", "a/b/c/m.py", "a/x/__init__.py", "a/x/m.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "a" / "x" / "y").mkdir()
    (tmp_path / "a" / "x" / "y" / "m.py").write_text("")  # a gap: no __init__.py in y
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))[::7]
    files = [*tmp_path.rglob("*.py"), *stdlib, Path("relative.py"), Path("/top.py")]
    packages = _Packages()
    for path in files:
        assert packages(str(path)) == package_of(str(path)), path


def test_the_user_cache_directory_is_where_platformdirs_puts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs
    from corral.lint_rules.cache import _user_directory

    for value in (str(tmp_path / "xdg"), "", "   ", None, "relative/cache"):
        if value is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert _user_directory() == Path(platformdirs.user_cache_dir("corral")), value
    # a relative HOME too: platformdirs decides (recent releases ignore it)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "relative-home")
    assert _user_directory() == Path(platformdirs.user_cache_dir("corral"))


# POSIX TZ strings (no tzdata needed): local time 12 hours behind UTC and 14 ahead, so the two
# local dates differ at every moment
BEHIND, AHEAD = "AAA+12", "BBB-14"


def _local_date(hours: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%d")


def test_a_new_day_checks_again_only_the_files_with_until(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The date is no part of the cache key: the first run of a day stays warm, but for the
    files whose findings can change with it (a suppression's ``until=``)."""
    root = tmp_path
    day = _local_date(-12)
    sup = f'# corral: allow[CRL201] reason="drained" until="{day}"'
    _write(
        root,
        {
            "pyproject.toml": "[tool.corral]\n",
            "a.py": LOUD,
            "b.py": f"import asyncio\nasyncio.create_task(x)  {sup}\n",
        },
    )
    _age(root)
    monkeypatch.setenv("TZ", BEHIND)
    assert _check(root) == [("a.py", 2, "CRL201")]  # b.py's exception still holds today
    # a result only the cache can give for a.py: served, not checked again, on the next day
    tables = _tables(root)
    assert isinstance(tables["results"], dict) and isinstance(tables["dated"], list)
    (a_key,) = (k for k, rows in tables["results"].items() if rows and k not in tables["dated"])
    rows = tables["results"][a_key]
    rows[0][3] = "served from the cache"
    _rewrite(root, {"results": tables["results"]})
    monkeypatch.setenv("TZ", AHEAD)
    result = run_corral("check", "--output-format", "json", cwd=root)
    found = {(r["path"], r["code"], r["message"]) for r in json.loads(result.stdout)}
    assert ("a.py", "CRL201", "served from the cache") in found
    assert {(p, c) for p, c, _ in found} == {
        ("a.py", "CRL201"),
        ("b.py", "CRL201"),
        ("b.py", "CRL905"),
    }
    assert len(list((root / ".corral_cache").glob("v*.json"))) == 1


def test_dated_entries_hold_for_their_day_only(tmp_path: Path) -> None:
    from corral.lint_rules.findings import Finding

    directory = tmp_path / ".corral_cache"
    cache = ResultCache(directory, "k", today="2026-12-01")
    cache.put("dated", [Finding("x.py", 1, 1, "CRL201", "m")], dated=True)
    cache.put("plain", [Finding("x.py", 1, 1, "CRL201", "m")])
    cache.put("redone", [], dated=True)
    cache.put("redone", [])  # checked again, and no longer dated
    cache.save({"dated", "plain", "redone"})
    same_day = ResultCache(directory, "k", today="2026-12-01")
    assert set(same_day.entries) == {"dated", "plain", "redone"} and same_day.dated == {"dated"}
    next_day = ResultCache(directory, "k", today="2026-12-02")
    assert set(next_day.entries) == {"plain", "redone"} and next_day.dated == set()
    assert next_day.dirty  # the dropped entry goes from the file at the next save


def test_cache_files_of_other_configurations_are_pruned(tmp_path: Path) -> None:
    """Each configuration writes its own cache file; only the newest few stay. Nothing that
    is not named as corral names them goes, and a symlink is neither followed nor removed."""
    from corral.lint_rules.cache import FILES_KEPT

    root = tmp_path / "project"
    _write(root, {"pyproject.toml": "[tool.corral]\n", "a.py": LOUD})
    directory = root / ".corral_cache"
    directory.mkdir()
    outside = tmp_path / "v9-0123456789abcdef.json"
    outside.write_text("not ours")
    (directory / "v9-00000000000000ff.json").symlink_to(outside)
    for name in ("notes.json", "v9-xyz.json", "V9-0000000000000001.json"):
        (directory / name).write_text("kept")
    old = [directory / f"v9-{n:016x}.json" for n in range(2 * FILES_KEPT)]
    for age, path in enumerate(reversed(old)):
        path.write_text("{}")
        os.utime(path, (time.time() - 3600 - age, time.time() - 3600 - age))
    assert _check(root) == [("a.py", 2, "CRL201")]
    left = {p.name for p in directory.iterdir()}
    newest_old = {p.name for p in old[-(FILES_KEPT - 1) :]}
    assert {p.name for p in old} & left == newest_old
    assert _cache_file(root).name in left
    assert {"notes.json", "v9-xyz.json", "V9-0000000000000001.json", ".gitignore"} <= left
    assert "v9-00000000000000ff.json" in left and outside.read_text() == "not ours"
