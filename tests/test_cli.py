"""The real `corral` CLI in subprocesses: exit codes, formats, configuration, discovery, cache."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from corral.lint_rules.cache import CACHE_FORMAT, ResultCache
from linthelpers import run_corral

BAD = "import asyncio\nasyncio.create_task(job())\n"
GOOD = "import asyncio\nasync def main():\n    await asyncio.sleep(1)\n"


def project(tmp_path: Path, config: str = "", **files: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.corral]\n{textwrap.dedent(config)}")
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_clean_tree_exits_zero(tmp_path: Path) -> None:
    root = project(tmp_path, app__main_py=GOOD)
    result = run_corral("check", ".", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout


def test_findings_exit_one_with_ruff_like_lines_and_hint(tmp_path: Path) -> None:
    root = project(tmp_path, **{"app__jobs.py": BAD})
    result = run_corral("check", cwd=root)
    assert result.returncode == 1
    line = result.stdout.splitlines()[0]
    assert line.startswith("app/jobs.py:2:1: CRL201 `asyncio.create_task`")
    assert line.endswith(
        "(use: corral.spawn / corral.TaskQueue.submit / corral.TaskGroup.start_soon)"
    )


def test_json_output(tmp_path: Path) -> None:
    root = project(tmp_path, **{"a.py": BAD})
    result = run_corral("check", "--output-format", "json", cwd=root)
    rows = json.loads(result.stdout)
    assert [(r["path"], r["line"], r["col"], r["code"]) for r in rows] == [("a.py", 2, 1, "CRL201")]
    assert rows[0]["replacement"].startswith("corral.spawn")


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('selct = ["CRL"]\n', "unknown key 'selct' (did you mean 'select'?)"),
        ('select = ["CRL2O1"]\n', "unknown rule code 'CRL2O1' in select (did you mean CRL201?)"),
        ('ignore = ["XYZ"]\n', "unknown rule code 'XYZ' in ignore"),
        ("strict = 'yes'\n", "strict must be a bool"),
        ('rules-version = "9.0"\n', "newer than the installed catalogue"),
        ('rules-version = "one"\n', "not a version"),
        ("select = [\n", "invalid TOML"),
        ('[tool.corral.allow]\nCRL999 = ["x/**"]\n', "unknown rule code 'CRL999' in allow"),
    ],
)
def test_bad_configuration_exits_two_with_one_clear_line(
    tmp_path: Path, config: str, needle: str
) -> None:
    root = project(tmp_path, config, **{"a.py": BAD})
    result = run_corral("check", ".", cwd=root)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert "pyproject.toml" in result.stderr


def test_unknown_code_on_the_command_line(tmp_path: Path) -> None:
    result = run_corral("check", "--select", "CRL2011", ".", cwd=project(tmp_path))
    assert result.returncode == 2 and "did you mean" in result.stderr


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run_corral("check", "nope/", cwd=project(tmp_path))
    assert result.returncode == 2
    assert "path does not exist: nope" in result.stderr


def test_select_ignore_and_families(tmp_path: Path) -> None:
    source = BAD + "import threading\nthreading.Thread(target=job)\n"
    root = project(tmp_path, 'ignore = ["CRL2"]\n', **{"a.py": source})
    result = run_corral("check", "--output-format", "json", cwd=root)
    assert [r["code"] for r in json.loads(result.stdout)] == ["CRL101"]
    result = run_corral("check", "--select", "CRL201", "--output-format", "json", cwd=root)
    assert [r["code"] for r in json.loads(result.stdout)] == ["CRL201"]


def test_strict_flag_and_explicit_selection_enable_strict_rules(tmp_path: Path) -> None:
    source = "import anyio\nasync def f():\n"
    source += "    async with anyio.create_task_group():\n        pass\n"
    root = project(tmp_path, **{"a.py": source})
    assert run_corral("check", cwd=root).returncode == 0
    assert run_corral("check", "--strict", cwd=root).returncode == 1
    assert run_corral("check", "--extend-select", "CRL204", cwd=root).returncode == 1


def test_per_rule_allow_globs_exempt_only_that_rule_there(tmp_path: Path) -> None:
    threads = "import threading\nthreading.Thread(target=job)\n"
    root = project(
        tmp_path,
        '[tool.corral.allow]\nCRL101 = ["infra/**"]\n',
        **{"infra__pool.py": threads + BAD, "app__x.py": threads},
    )
    result = run_corral("check", "--output-format", "json", cwd=root)
    got = sorted((r["path"], r["code"]) for r in json.loads(result.stdout))
    assert got == [("app/x.py", "CRL101"), ("infra/pool.py", "CRL201")]


def test_gitignore_and_exclude_are_respected_but_explicit_files_are_checked(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        'extend-exclude = ["generated"]\n',
        **{"a.py": GOOD, "vendored__x.py": BAD, "generated__y.py": BAD, "sub__build__z.py": BAD},
    )
    (root / ".gitignore").write_text("vendored/\n")
    assert run_corral("check", cwd=root).returncode == 0
    assert run_corral("check", "vendored/x.py", cwd=root).returncode == 1


def test_force_exclude_skips_excluded_files_named_explicitly(tmp_path: Path) -> None:
    """pre-commit names every staged file; --force-exclude keeps `exclude` in force (ruff's)."""
    root = project(
        tmp_path,
        'extend-exclude = ["generated", "legacy_*.py"]\n',
        **{"generated__y.py": BAD, "pkg__legacy_x.py": BAD, "pkg__new.py": BAD},
    )
    named = ["generated/y.py", "pkg/legacy_x.py", "pkg/new.py"]
    without = run_corral("check", "--output-format", "json", *named, cwd=root)
    assert sorted(r["path"] for r in json.loads(without.stdout)) == sorted(named)
    forced = run_corral("check", "--force-exclude", "--output-format", "json", *named, cwd=root)
    assert [r["path"] for r in json.loads(forced.stdout)] == ["pkg/new.py"]
    assert run_corral("check", "--force-exclude", "generated", cwd=root).returncode == 0
    stdin = run_corral(
        "check",
        "--force-exclude",
        "--stdin-filename",
        "generated/z.py",
        "-",
        cwd=root,
        stdin=BAD.encode(),
    )
    assert stdin.returncode == 0, stdin.stdout


def test_nested_gitignore(tmp_path: Path) -> None:
    root = project(tmp_path, **{"pkg__keep.py": GOOD, "pkg__tmp__scratch.py": BAD})
    (root / "pkg" / ".gitignore").write_text("tmp/\n")
    assert run_corral("check", cwd=root).returncode == 0


def test_stdin_with_filename(tmp_path: Path) -> None:
    root = project(tmp_path)
    result = run_corral(
        "check", "--stdin-filename", "svc/handler.py", "-", cwd=root, stdin=BAD.encode()
    )
    assert result.returncode == 1
    assert result.stdout.startswith("svc/handler.py:2:1: CRL201")


def _cache_files(root: Path) -> list[Path]:
    return sorted((root / ".corral_cache").glob(f"v{CACHE_FORMAT}-*.json"))


def test_cache_is_reused_and_invalidated_by_content_and_config(tmp_path: Path) -> None:
    root = project(tmp_path, **{"a.py": BAD})
    first = run_corral("check", cwd=root)
    caches = _cache_files(root)
    assert len(caches) == 1
    _, tables, facts = caches[0].read_bytes().split(b"\n")  # signature, tables, import facts
    data = json.loads(tables)
    assert len(data["results"]) == 1
    # poison the cached entry and sign it with this user's key: a hit serves it verbatim
    ((digest, rows),) = data["results"].items()
    rows[0][3] = "served from cache"
    cache = ResultCache(root / ".corral_cache", "k")
    poisoned = json.dumps({**data, "results": {digest: rows}}).encode() + b"\n" + facts
    caches[0].write_bytes(cache._mac(poisoned) + b"\n" + poisoned)
    assert "served from cache" in run_corral("check", cwd=root).stdout
    assert "served from cache" not in run_corral("check", "--no-cache", cwd=root).stdout
    (root / "a.py").write_text(BAD + "\n")  # new content, new key
    assert "served from cache" not in run_corral("check", cwd=root).stdout
    assert first.returncode == 1
    run_corral("check", "--strict", cwd=root)
    assert len(_cache_files(root)) == 2


def test_damaged_cache_is_ignored(tmp_path: Path) -> None:
    root = project(tmp_path, **{"a.py": BAD})
    run_corral("check", cwd=root)
    for cache in _cache_files(root):
        cache.write_text("{not json")
    assert run_corral("check", cwd=root).returncode == 1


def test_rules_pin_keeps_newer_rules_off_unless_selected(tmp_path: Path) -> None:
    catalogue = textwrap.dedent(
        """
        version: "1.1.0"
        rules:
          - code: CRL201
            name: asyncio-create-task
            since: "1.0.0"
            level: default
            summary: old rule
            targets: [asyncio.create_task]
            replacement: corral.spawn
            rationale: r
            examples: {invalid: [], valid: []}
          - code: CRL202
            name: asyncio-ensure-future
            since: "1.1.0"
            level: default
            summary: new rule
            targets: [asyncio.ensure_future]
            replacement: corral.spawn
            rationale: r
            examples: {invalid: [], valid: []}
        """
    )
    source = "import asyncio\nasyncio.create_task(a())\nasyncio.ensure_future(b())\n"
    root = project(tmp_path, 'catalogue = "cat.yaml"\nrules-version = "1.0"\n', **{"a.py": source})
    (root / "cat.yaml").write_text(catalogue)
    codes = lambda r: [row["code"] for row in json.loads(r.stdout)]  # noqa: E731
    assert codes(run_corral("check", "--output-format", "json", cwd=root)) == ["CRL201"]
    selected = run_corral("check", "--extend-select", "CRL202", "--output-format", "json", cwd=root)
    assert codes(selected) == ["CRL201", "CRL202"]
    (root / "pyproject.toml").write_text(
        '[tool.corral]\ncatalogue = "cat.yaml"\nrules-version = "1.1"\n'
    )
    assert codes(run_corral("check", "--output-format", "json", cwd=root)) == ["CRL201", "CRL202"]


def test_rules_and_explain(tmp_path: Path) -> None:
    root = project(tmp_path)
    table = run_corral("rules", cwd=root)
    assert table.returncode == 0
    assert "CRL204" in table.stdout and "strict" in table.stdout
    explained = run_corral("explain", "CRL201", cwd=root)
    assert explained.returncode == 0
    for part in ("Why is this bad?", "Use instead: corral.spawn", "CWE-400", "Invalid:", "Valid:"):
        assert part in explained.stdout
    assert run_corral("explain", "asyncio-ensure-future", cwd=root).returncode == 0
    unknown = run_corral("explain", "CRL2010", cwd=root)
    assert unknown.returncode == 2 and "did you mean" in unknown.stderr


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    assert run_corral(cwd=tmp_path).returncode == 2


def test_stat_shortcut_never_serves_stale_results(tmp_path: Path) -> None:
    import os
    import time

    root = project(tmp_path, **{"a.py": GOOD})
    old = time.time() - 60
    os.utime(root / "a.py", (old, old))
    assert run_corral("check", cwd=root).returncode == 0
    assert run_corral("check", cwd=root).returncode == 0  # served from the stat record
    (root / "a.py").write_text(BAD)  # same second as the write: size differs
    assert run_corral("check", cwd=root).returncode == 1
    (root / "a.py").write_text(GOOD.replace("1", "2"))  # same size, fresh mtime
    assert run_corral("check", cwd=root).returncode == 0


def test_relative_imports_resolve_inside_packages(tmp_path: Path) -> None:
    root = project(tmp_path)
    files = {
        "concurrent/futures/__init__.py": "from .thread import ThreadPoolExecutor as te\n",
        "concurrent/__init__.py": "",
        "concurrent/futures/thread.py": "class ThreadPoolExecutor:\n    pass\n",
        "mylib/__init__.py": "",
        "mylib/jobs.py": "from .tasks import create_task\ncreate_task()\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    result = run_corral("check", "--output-format", "json", cwd=root)
    rows = json.loads(result.stdout)
    assert [(r["path"], r["line"], r["code"]) for r in rows] == [
        ("concurrent/futures/__init__.py", 1, "CRL102")
    ]


def test_tasks_subcommand_hands_every_argument_to_the_store_cli(tmp_path: Path) -> None:
    missing = run_corral("tasks", "--db", "missing.db", "stats", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no task database at missing.db" in missing.stderr
    assert not (tmp_path / "missing.db").exists(), "inspecting never creates a database"
    assert run_corral("tasks", "stats", "--db", "missing.db", cwd=tmp_path).returncode == 2
