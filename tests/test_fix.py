"""corral fix: before/after fixtures, refusals with reasons, idempotence, --diff, execution."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import types
from pathlib import Path

import pytest
from corral.lint_rules.cli import main
from corral.lint_rules.engine import check_text
from corral.lint_rules.findings import Finding
from corral.lint_rules.fix_triage import needs_codemod
from corral.lint_rules.fixes import FileFix, fix_source
from corral.lint_rules.project import load_project

FIXTURES = Path(__file__).parent / "fixtures" / "fix"
PAIRS = sorted(p.name.removesuffix(".before.py.txt") for p in FIXTURES.glob("*.before.py.txt"))
REFUSED = sorted((FIXTURES / "refused").glob("*.py.txt"))
EXPECT = re.compile(r"# not fixed: (?P<reason>.+)$")


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of its own, so the repository's configuration does not apply."""
    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fix(text: str, name: str = "mod.py", *, triage: bool = True) -> FileFix:
    project = load_project(None, start=Path.cwd())

    def check(source: str) -> list[Finding]:
        return check_text(source, name, project.rules)

    return fix_source(text, name, check(text), check, triage=triage)


def test_every_codemod_has_a_fixture_pair() -> None:
    assert {"create_task", "create_task_alias", "ensure_future", "loop_create_task"} <= set(PAIRS)
    assert "thread_start" in PAIRS
    for name in PAIRS:
        assert (FIXTURES / f"{name}.after.py.txt").is_file(), name


@pytest.mark.parametrize("name", PAIRS)
def test_fixture_is_rewritten_exactly(name: str, project_dir: Path) -> None:
    target = project_dir / "mod.py"
    shutil.copy(FIXTURES / f"{name}.before.py.txt", target)
    assert main(["fix", "mod.py"]) == 0
    expected = (FIXTURES / f"{name}.after.py.txt").read_text()
    assert target.read_text() == expected
    compile(expected, f"{name}.after.py.txt", "exec")
    # idempotent: the second run finds nothing left to rewrite
    assert main(["fix", "--diff", "mod.py"]) == 0
    assert target.read_text() == expected


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.name)
def test_unsafe_cases_are_left_alone_and_explained(path: Path, project_dir: Path) -> None:
    text = path.read_text()
    result = _fix(text, path.name)
    assert result.after == text
    assert result.fixed == 0
    expected = {
        i: m["reason"]
        for i, line in enumerate(text.splitlines(), 1)
        if (m := EXPECT.search(line)) is not None
    }
    got = {r.line: r.reason for r in result.refusals}
    assert set(got) == set(expected)
    for line, reason in expected.items():
        assert reason in got[line], (line, got[line])


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.name)
def test_ast_triage_and_codemod_give_the_same_reasons(path: Path, project_dir: Path) -> None:
    text = path.read_text()
    assert _fix(text, path.name).refusals == _fix(text, path.name, triage=False).refusals


def test_triage_skips_libcst_only_without_candidates(project_dir: Path) -> None:
    project = load_project(None, start=Path.cwd())
    kept = (FIXTURES / "refused" / "kept_results.py.txt").read_text()
    assert needs_codemod(kept, check_text(kept, "k.py", project.rules))[0] is False
    before = (FIXTURES / "create_task.before.py.txt").read_text()
    assert needs_codemod(before, check_text(before, "c.py", project.rules))[0] is True


def test_suppressed_finding_is_not_rewritten(project_dir: Path) -> None:
    text = (
        "import asyncio\n\n"
        "async def main():\n"
        '    asyncio.create_task(work())  # corral: allow[CRL201] reason="registry owns it"\n'
    )
    result = _fix(text)
    assert result.after == text
    assert result.refusals == []


FIRE = "import asyncio\n\n\nasync def main():\n    asyncio.create_task(work())\n"


def test_fix_leaves_baselined_findings_alone(project_dir: Path) -> None:
    (project_dir / "old.py").write_text(FIRE)
    assert main(["baseline", "old.py"]) == 0
    (project_dir / "new.py").write_text(FIRE)
    assert main(["fix", "old.py", "new.py"]) == 0
    assert (project_dir / "old.py").read_text() == FIRE  # accepted debt: not rewritten
    assert "corral.spawn(work)" in (project_dir / "new.py").read_text()
    assert main(["fix", "--no-baseline", "old.py"]) == 0
    assert "corral.spawn(work)" in (project_dir / "old.py").read_text()


def test_fix_never_rewrites_an_excluded_file_even_when_named(project_dir: Path) -> None:
    (project_dir / "pyproject.toml").write_text('[tool.corral]\nextend-exclude = ["vendor/"]\n')
    (project_dir / "vendor").mkdir()
    (project_dir / "vendor" / "lib.py").write_text(FIRE)
    assert main(["fix", "vendor/lib.py"]) == 0
    assert main(["fix", "."]) == 0
    assert (project_dir / "vendor" / "lib.py").read_text() == FIRE


def test_import_added_once_and_unused_import_removed(project_dir: Path) -> None:
    text = (
        "import asyncio\nimport threading\n\n\n"
        "async def main():\n"
        "    asyncio.create_task(a())\n"
        "    asyncio.ensure_future(b(1))\n"
        "    threading.Thread(target=c).start()\n"
    )
    after = _fix(text).after
    assert after.count("import corral") == 1
    assert "import corral.sync\n" in after
    assert "import asyncio" not in after and "import threading" not in after
    assert "corral.spawn(a)\n" in after and "corral.spawn(b, 1)\n" in after
    assert "corral.sync.spawn(c)\n" in after


def test_import_still_used_is_kept_and_reported(project_dir: Path) -> None:
    text = (
        "from asyncio import create_task as ct\n\n"
        "async def main():\n"
        "    ct(a())\n"
        "    t = ct(b())\n"
        "    await t\n"
    )
    result = _fix(text)
    assert "from asyncio import create_task as ct" in result.after
    assert "corral.spawn(a)" in result.after
    reasons = {r.line: r.reason for r in result.refusals}
    assert reasons[5] == "result is assigned"
    assert "not a call" in reasons[1]


def test_shadowed_name_is_not_touched(project_dir: Path) -> None:
    text = "def create_task(x):\n    return x\n\ncreate_task(work())\n"
    result = _fix(text)
    assert result.after == text and result.refusals == []


def test_diff_mode_prints_a_diff_and_exits_1(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = (
        "import asyncio\n\nasync def main():\n"
        "    asyncio.create_task(work(1))\n    t = asyncio.create_task(work(2))\n"
    )
    (project_dir / "svc.py").write_text(source)
    assert main(["fix", "--diff", "svc.py"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("--- a/svc.py\n+++ b/svc.py\n")
    assert "+    corral.spawn(work, 1)\n" in out
    assert "-    asyncio.create_task(work(1))\n" in out
    assert "svc.py:5:9: CRL201 not fixed: result is assigned" in err
    assert (project_dir / "svc.py").read_text() == source  # --diff never writes
    assert main(["fix", "svc.py"]) == 0
    assert main(["fix", "--diff", "svc.py"]) == 0
    out, _ = capsys.readouterr()
    assert "+++" not in out


def test_fix_keeps_encoding_and_crlf(project_dir: Path) -> None:
    source = (
        "# -*- coding: latin-1 -*-\r\nimport asyncio\r\n\r\n"
        "async def main():\r\n    asyncio.create_task(work('café'))  # déjà\r\n"
    )
    path = project_dir / "legacy.py"
    path.write_bytes(source.encode("latin-1"))
    assert main(["fix", "legacy.py"]) == 0
    data = path.read_bytes()
    assert b"corral.spawn(work, 'caf\xe9')  # d\xe9j\xe0\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_fix_missing_path_is_a_usage_error(
    project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fix", "nope.py"]) == 2
    assert "path does not exist: nope.py" in capsys.readouterr().err


def test_unparseable_file_is_skipped(project_dir: Path) -> None:
    (project_dir / "broken.py").write_text("import asyncio\nasyncio.create_task(\n")
    assert main(["fix", "--diff", "broken.py"]) == 0


# -- execution: the rewritten fixtures behave like the originals ------------------------------


def _load(path: Path) -> types.ModuleType:
    module = types.ModuleType(path.stem.replace(".", "_"))
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


def _async_runtime() -> types.ModuleType:
    import corral

    if not hasattr(corral, "spawn") or not hasattr(corral, "TaskQueue"):
        pytest.skip("corral.spawn / corral.TaskQueue are not in this build of the runtime")
    return corral


def _sync_runtime() -> types.ModuleType:
    try:
        import corral.sync
    except ModuleNotFoundError:
        pytest.skip("corral.sync (sync.spawn / sync.TaskQueue) is not in this build of the runtime")
    if not hasattr(corral.sync, "spawn") or not hasattr(corral.sync, "TaskQueue"):
        pytest.skip("corral.sync.spawn / corral.sync.TaskQueue are not in this build")
    return corral.sync


ASYNC_PAIRS = ["create_task", "create_task_alias", "ensure_future", "loop_create_task"]


@pytest.mark.parametrize("name", ASYNC_PAIRS)
def test_rewritten_async_fixture_runs_like_the_original(name: str) -> None:
    corral = _async_runtime()
    before = _load(FIXTURES / f"{name}.before.py.txt")
    after = _load(FIXTURES / f"{name}.after.py.txt")

    async def run_before() -> None:
        await before.main()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*others)

    async def run_after() -> None:
        async with corral.TaskQueue("fixed", workers=2, capacity=16, default=True):
            await after.main()

    asyncio.run(run_before())
    asyncio.run(run_after())
    assert before.results, "the fixture must do observable work"
    assert sorted(map(repr, after.results)) == sorted(map(repr, before.results))


def test_rewritten_thread_fixture_runs_like_the_original() -> None:
    sync = _sync_runtime()
    before = _load(FIXTURES / "thread_start.before.py.txt")
    after = _load(FIXTURES / "thread_start.after.py.txt")
    existing = set(threading.enumerate())
    before.main()
    for thread in set(threading.enumerate()) - existing:
        thread.join(timeout=10)
    with sync.TaskQueue("fixed-sync", workers=2, capacity=16, default=True):
        after.main()
    assert before.results
    assert sorted(after.results) == sorted(before.results)
