"""The gate cannot be slipped: every Python-valid spelling of an import reaches the resolver,
and hostile files, trees and configurations end in a finding or one clear error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hypothesmith
import pytest
from corral.lint_rules.engine import check_bytes, check_text
from corral.lint_rules.findings import printable
from corral.lint_rules.resolver import resolve_module
from corral.lint_rules.source import Unreadable, decode, parse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from linthelpers import ruleset, run_corral

CALL = b"asyncio.create_task(job())\n"

# Each is valid Python that imports a watched module in a way a line-anchored scan misses,
# followed by the banned call; every one must be a finding on every entry point.
EVASIONS: dict[str, tuple[bytes, str]] = {
    "continued_import.py": (b"import \\\nasyncio\n" + CALL, "CRL201"),
    "after_semicolon.py": (b"x = 1; import asyncio\n" + CALL, "CRL201"),
    "after_if.py": (b"if True: import asyncio\n" + CALL, "CRL201"),
    "form_feed.py": (b"\x0cimport asyncio\n" + CALL, "CRL201"),
    "after_try.py": (
        b"try: import threading\nexcept ImportError: pass\nthreading.Thread(target=f).start()\n",
        "CRL101",
    ),
    "continued_from.py": (b"from \\\nasyncio import create_task\ncreate_task(job())\n", "CRL201"),
    "utf7.py": (b"# coding: utf-7\n+AGk-mport asyncio\n" + CALL, "CRL201"),
    "utf7_after_long_line.py": (
        b"#" + b"-" * 500 + b"\n# coding: utf-7\n+AGk-mport asyncio\n" + CALL,
        "CRL201",
    ),
    "nfkc_identifier.py": (  # a fullwidth "a": the parser NFKC-normalises identifiers
        "import \uff41syncio\n\uff41syncio.create_task(job())\n".encode(),
        "CRL201",
    ),
}


@pytest.mark.parametrize("name", sorted(EVASIONS))
def test_import_spellings_python_accepts_reach_the_resolver(name: str) -> None:
    data, code = EVASIONS[name]
    assert code in {f.code for f in check_bytes(data, name, ruleset(strict=False))}


def test_import_spellings_are_findings_on_cli_stdin_and_flake8(tmp_path: Path) -> None:
    for name, (data, _) in EVASIONS.items():
        (tmp_path / name).write_bytes(data)
    result = run_corral("check", "--no-cache", "--output-format", "json", ".", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    found = {(row["path"], row["code"]) for row in json.loads(result.stdout)}
    for name, (data, code) in EVASIONS.items():
        assert (name, code) in found, name
        piped = subprocess.run(
            [str(Path(sys.executable).parent / "corral"), "check", "-", "--stdin-filename", name],
            cwd=tmp_path,
            input=data,
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert piped.returncode == 1 and code.encode() in piped.stdout, name
    flake8 = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "CRL", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    for name, (_, code) in EVASIONS.items():
        if name.startswith("utf7") or name.startswith("nfkc"):
            continue  # flake8 decodes and parses these itself; the matcher sees its tree
        assert f"./{name}:" in flake8.stdout and code in flake8.stdout, (name, flake8.stdout)


# Forms the resolver folds or looks up dynamically: the prefilter must let them through.
DYNAMIC = [
    'import asyncio\ndef f():\n    getattr(asyncio, "create_" + "task")(x())\n',
    'import asyncio\ngetattr(asyncio, "ensure_%s" % "future")(x())\n',
    'import sys\nsys.modules.get("asyncio").create_task(x())\n',
    'import sys\nsys.modules["async" "io"].create_task(x())\n',
    'import importlib\nimportlib.import_module("thr" + "eading").Thread().start()\n',
    '__import__("\\x61syncio").create_task(x())\n',
    'import asyncio\nvars(asyncio)["create_" "task"](x())\n',
    'import asyncio\nasyncio.__dict__["\\x63reate_task"](x())\n',
]


def _resolver_alone(text: str) -> list[object]:
    """What the resolver finds with no prefilter and no per-function skip."""
    tree = parse(text)
    if isinstance(tree, Unreadable):
        return []
    return list(resolve_module(tree, ruleset(), None))


@pytest.mark.parametrize("source", DYNAMIC)
def test_prefilter_passes_every_dynamic_form(source: str) -> None:
    assert ruleset().may_match(source)


_WORDS = ["asyncio", "threading", "create_task", "Thread", "getattr", "sys", "modules", "x"]
_SNIPPETS = st.sampled_from(
    [
        *DYNAMIC,
        *(data.decode("utf-8", "replace") for data, _ in EVASIONS.values()),
        "import asyncio as aio\ndef g():\n    aio.create_task(x())\n",
        "from threading import *\nThread().start()\n",
        "class W(__import__('threading').Thread):\n    pass\nW()\n",
    ]
)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    module=hypothesmith.from_grammar(),
    snippet=_SNIPPETS,
    words=st.lists(st.sampled_from(_WORDS), max_size=3),
    drop=st.integers(min_value=0, max_value=40),
)
@example(module="", snippet=DYNAMIC[0], words=[], drop=0)
def test_prefilter_negative_means_the_resolver_finds_nothing(
    module: str, snippet: str, words: list[str], drop: int
) -> None:
    # mix generated code with banned forms, then damage them so some no longer match
    text = module + "\n" + snippet + "\n" + " ".join(words) + "\n"
    if drop:
        cut = len(module) + 1 + drop % max(len(snippet), 1)
        text = text[:cut] + text[cut + 1 :]
    if ruleset().may_match(text):
        return
    assert _resolver_alone(text) == [], text


CR_ONLY = [
    (b"import asyncio\rdef f():\r    asyncio.create_task(g())\r", [(3, "CRL201")]),
    (
        b"from asyncio import create_task as ct\rdef f():\r    ct(g())\r",
        [(1, "CRL201"), (3, "CRL201")],
    ),
    (b"import asyncio\r\ndef f():\r\n    asyncio.create_task(g())\r\n", [(3, "CRL201")]),
]


@pytest.mark.parametrize(("data", "expected"), CR_ONLY)
def test_cr_only_line_endings_keep_findings_inside_functions(
    data: bytes, expected: list[tuple[int, str]]
) -> None:
    assert [(f.line, f.code) for f in check_bytes(data, "cr.py", ruleset())] == expected


def test_unknown_cookie_is_reported_even_without_trigger_words(tmp_path: Path) -> None:
    (tmp_path / "cookie.py").write_bytes(b"# -*- coding: uft-8 -*-\nx = 1\n")
    (tmp_path / "clean.py").write_bytes(b"x = 1\n")
    result = run_corral("check", "--no-cache", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert "cookie.py:1:1: CRL901" in result.stdout and "clean.py" not in result.stdout


@pytest.mark.parametrize(
    "data",
    [
        b"import asyncio\nasyncio.create_task(x)\nx = 1\x00\n",
        b"import asyn\x00cio\nasyncio.create_task(x)\n",
        b"import asyncio\nif x:\n\tif y:\n        pass\n\tasyncio.create_task(x)\n",
    ],
)
def test_unparsable_files_that_could_hide_a_finding_are_crl901(data: bytes) -> None:
    assert [f.code for f in check_bytes(data, "x.py", ruleset())] == ["CRL901"]


def test_fallback_parser_keeps_f_string_contents() -> None:
    text = (
        "import asyncio\ntype Alias = int\n"
        'a = f"{asyncio.create_task(x)}"\n'
        'b = f"""\n{\n  asyncio.ensure_future(y)\n}:{z:>{w}}"""\n'
        'c = f"{", ".join(asyncio.gather(q))}"\n'
        "asyncio.create_task(last)\n"
    )
    findings = [(f.line, f.code) for f in check_text(text, "new.py", ruleset(strict=False))]
    assert findings == [(3, "CRL201"), (6, "CRL202"), (9, "CRL201")]


@pytest.mark.parametrize("depth", [2_000, 5_000])
def test_deep_nesting_in_the_fallback_costs_only_its_file(depth: int) -> None:
    text = "import asyncio\nasyncio.create_task(x)\ntype X = int\n"
    text += "f(" * depth + ")" * depth + "\n"
    (finding,) = check_text(text, "deep.py", ruleset())
    assert finding.code == "CRL901" and "nested" in finding.message


def test_long_string_annotation_and_symlink_loop_do_not_crash(tmp_path: Path) -> None:
    annotation = "(" * 15_000
    source = f'import asyncio\ndef f(loop: "{annotation}"):\n    loop.create_task(x)\n'
    assert check_text(source, "ann.py", ruleset()) == []
    (tmp_path / "loop.py").symlink_to("loop.py")
    (tmp_path / "a.py").write_bytes(b"import asyncio\n" + CALL)
    result = run_corral("check", "--no-cache", ".", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "loop.py:1:1: CRL901 cannot read: Too many levels of symbolic links" in result.stdout
    assert "a.py:2:1: CRL201" in result.stdout


def test_special_files_named_explicitly_are_reported(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "zero.py").symlink_to("/dev/zero")
    result = run_corral("check", "--no-cache", "fifo.py", "zero.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "fifo.py:1:1: CRL901 cannot read: not a regular file (a FIFO)" in result.stdout
    # shown by its real path, as every file reached through a symlink is
    assert "/dev/zero:1:1: CRL901 cannot read: not a regular file (a character device)" in (
        result.stdout
    )


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize(
    "where", [".gitignore", "rules.yaml", ".corral-baseline.json", "org-rules.yaml"]
)
def test_config_files_at_special_files_are_errors_not_hangs(
    tmp_path: Path, kind: str, where: str
) -> None:
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    if where == "rules.yaml":
        (tmp_path / "pyproject.toml").write_text('[tool.corral]\ncatalogue = "rules.yaml"\n')
    if where == "org-rules.yaml":
        (tmp_path / "pyproject.toml").write_text('[tool.corral]\nrule-files = ["org-rules.yaml"]\n')
    target = tmp_path / where
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    result = run_corral("check", "--no-cache", ".", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "not a regular file" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unlistable_directory_named_explicitly_is_reported(tmp_path: Path) -> None:
    # root reads every directory, so run the check as an unprivileged user
    base = Path(os.environ.get("CORRAL_TEST_SHARED_TMP", "/tmp")) / f"corral-ro-{os.getpid()}"
    secret = base / "secret"
    secret.mkdir(parents=True, exist_ok=True)
    try:
        base.chmod(0o755)
        secret.chmod(0o700)
        (secret / "a.py").write_bytes(b"import asyncio\n" + CALL)
        result = _as_nobody(["check", "--no-cache", "secret"], base)
        assert result.returncode == 1, result.stderr
        assert "secret:1:1: CRL901 cannot list directory: Permission denied" in result.stdout
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _as_nobody(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    corral = str(Path(sys.executable).parent / "corral")
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", corral, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('ignore = [""]\n', "empty rule selector '' in ignore"),
        ("select = []\n", "select is empty"),
        ('[tool.corral.allow]\n"" = ["**"]\n', "empty rule selector '' in allow"),
        ('ignore = ["CRL1", "CRL2", "CRL3"]\n', "no rule is enabled"),
        ('exclude = ["!"]\n', "exclude: invalid pattern"),
    ],
)
def test_configuration_that_turns_everything_off_is_an_error(
    tmp_path: Path, config: str, needle: str
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n" + config)
    (tmp_path / "a.py").write_bytes(b"import asyncio\n" + CALL)
    result = run_corral("check", "--no-cache", ".", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_empty_select_on_the_command_line_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_bytes(b"import asyncio\n" + CALL)
    result = run_corral("check", "--select", "", ".", cwd=tmp_path)
    assert result.returncode == 2 and "select is empty" in result.stderr


@pytest.mark.parametrize(
    "pyproject",
    ["tool = 5\n", "a = " + "[" * 5_000 + "]" * 5_000 + "\n"],
    ids=["tool-not-table", "deep-toml"],
)
def test_malformed_pyproject_is_one_line_exit_two(tmp_path: Path, pyproject: str) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    result = run_corral("check", ".", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


EVIL_NAME = "evil\n::error file=README.md,line=1::pwned\n\x1b[31m.py"


def test_control_characters_are_escaped_in_text_and_github_output(tmp_path: Path) -> None:
    (tmp_path / EVIL_NAME).write_bytes(b"import asyncio\n" + CALL)
    (tmp_path / "sup.py").write_bytes(b"x = 1  # corral: allow[\x1b[2J] reason='r'\n")
    for fmt in ("text", "github"):
        result = run_corral("check", "--no-cache", "--output-format", fmt, ".", cwd=tmp_path)
        assert result.returncode == 1
        assert "\x1b" not in result.stdout, fmt
        lines = result.stdout.splitlines()
        assert not any(line.startswith("::error file=README.md") for line in lines), fmt
        assert all(line.startswith("::") for line in lines) or fmt == "text"
    assert "evil\\n::error file=README.md,line=1::pwned\\n\\x1b[31m.py:2:1: CRL201" in (
        run_corral("check", "--no-cache", ".", cwd=tmp_path).stdout
    )
    assert printable("a\tb\u202ec") == "a\\tb\\u202ec"


def test_decode_reads_the_cookie_on_the_first_two_lines_only() -> None:
    assert decode(b"#" + b"x" * 500 + b"\n# coding: latin-1\ns = '\xe9'\n") == (
        "#" + "x" * 500 + "\n# coding: latin-1\ns = '\xe9'\n"
    )
    assert isinstance(decode(b"x = 1\ny = 2\n# coding: latin-1\n\xe9\n"), Unreadable)


def _fingerprint(root: Path) -> str:
    from corral.lint_rules.project import load_project

    project = load_project(root / "pyproject.toml")
    return project.config.fingerprint(project.catalogue)


def test_a_cache_committed_to_the_repository_is_not_trusted(tmp_path: Path) -> None:
    from corral.lint_rules.cache import CACHE_FORMAT, content_hash

    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    data = b"import asyncio\n" + CALL
    (tmp_path / "a.py").write_bytes(data)
    cache = tmp_path / ".corral_cache"
    cache.mkdir()
    forged = {"results": {content_hash(data): []}, "facts": {}, "stats": {}, "written_at": 0}
    body = json.dumps(forged).encode()
    # the previous, unsigned format, and the signed one with a made-up signature
    (cache / f"v5-{_fingerprint(tmp_path)}.json").write_bytes(body)
    fake = f"corral-cache-v{CACHE_FORMAT} {'0' * 64}\n".encode()
    (cache / f"v{CACHE_FORMAT}-{_fingerprint(tmp_path)}.json").write_bytes(fake + body)
    result = run_corral("check", ".", cwd=tmp_path)
    assert result.returncode == 1 and "a.py:2:1: CRL201" in result.stdout


def test_wrong_shape_cache_entries_signed_by_this_user_are_ignored(tmp_path: Path) -> None:
    from corral.lint_rules.cache import CACHE_FORMAT, ResultCache

    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    (tmp_path / "a.py").write_bytes(b"import asyncio\n" + CALL)
    cache = ResultCache(tmp_path / ".corral_cache", "k")
    row = [1, 1, "CRL201", "m", 1, 1, "", "", "", ""]
    shapes: list[object] = [
        {"results": {"d": [["x"]]}, "facts": {}, "stats": {"a": [1]}, "written_at": 0},
        {"results": {"d": 5}, "facts": {"d": 5}, "stats": {"a": 5}, "written_at": 0},
        {"results": [], "facts": [], "stats": [], "written_at": "x"},
        [1, 2],
        {"results": {"d": [[*row[:6], None, *row[7:]]]}, "facts": {}, "stats": {}, "written_at": 0},
        {"results": {"d": [[1, "1", *row[2:]]]}, "facts": {}, "stats": {}, "written_at": 0},
        {"results": {}, "facts": {"d": [{"W": 5}, [7]]}, "stats": {}, "written_at": 0},
        {"results": {}, "facts": {"d": [{"W": [5]}, ["x"]]}, "stats": {}, "written_at": 0},
    ]
    for shape in shapes:
        body = json.dumps(shape).encode()
        for old in (tmp_path / ".corral_cache").glob("v*-*.json"):
            old.unlink()
        (tmp_path / ".corral_cache").mkdir(exist_ok=True)
        path = tmp_path / ".corral_cache" / f"v{CACHE_FORMAT}-{_fingerprint(tmp_path)}.json"
        path.write_bytes(cache._mac(body) + b"\n" + body)
        result = run_corral("check", ".", cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, shape
        assert "a.py:2:1: CRL201" in result.stdout


@pytest.mark.parametrize(
    ("baseline", "needle"),
    [
        (
            '{"version": 1, "entries": [{"path": "a.py", "code": "CRL201", "line": "x", '
            '"occurrence": 1e400}]}',
            "entries[0]",
        ),
        ('{"version": 1, "entries": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"version": true, "entries": []}', "format version True"),
        ('{"version": 1.0, "entries": []}', "format version 1.0"),
    ],
    ids=["occurrence-1e400", "deep-json", "version-true", "version-float"],
)
def test_malformed_baseline_is_one_line_exit_two(
    tmp_path: Path, baseline: str, needle: str
) -> None:
    (tmp_path / "a.py").write_bytes(b"import asyncio\n" + CALL)
    (tmp_path / ".corral-baseline.json").write_text(baseline)
    result = run_corral("check", "--no-cache", ".", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr[-500:])
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_baseline_and_fix_in_a_read_only_project_exit_two_and_write_nothing() -> None:
    # root ignores mode bits, so the commands run as an unprivileged user on a root-owned tree
    base = Path("/tmp") / f"corral-readonly-{os.getpid()}"
    base.mkdir(mode=0o755)
    try:
        (base / "pyproject.toml").write_text("[tool.corral]\n")
        (base / "a.py").write_bytes(b"import asyncio\n\nasync def f():\n    " + CALL)
        before = sorted(p.name for p in base.iterdir())
        for command in (["baseline"], ["fix"]):
            result = _as_nobody([*command, "."], base)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "Permission denied" in result.stderr
        assert sorted(p.name for p in base.iterdir()) == before
        assert b"corral.spawn" not in (base / "a.py").read_bytes()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_writes_never_follow_symlinks_out_of_the_project(tmp_path: Path) -> None:
    root, outside = tmp_path / "project", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "pyproject.toml").write_text("[tool.corral]\n")
    (root / "a.py").write_bytes(b"import asyncio\n" + CALL)
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o600)
    (root / ".corral-baseline.json.tmp").symlink_to(victim)
    cache = root / ".corral_cache"
    cache.mkdir()
    (cache / ".gitignore").symlink_to(outside / "created-by-corral")
    assert run_corral("baseline", ".", cwd=root).returncode == 0
    assert victim.read_text() == "keep me" and victim.stat().st_mode & 0o777 == 0o600
    assert not (outside / "created-by-corral").exists()
    assert json.loads((root / ".corral-baseline.json").read_text())["entries"]

    # a cache directory that is a symlink out of the project is not written to
    other = tmp_path / "elsewhere"
    other.mkdir()
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    cache.symlink_to(other)
    assert run_corral("check", "--no-baseline", ".", cwd=root).returncode == 1
    assert list(other.iterdir()) == []

    # corral fix leaves a file reached through a symlink out of the project alone
    target = outside / "lib.py"
    target.write_bytes(b"import asyncio\n\nasync def f():\n    " + CALL)
    (root / "lib.py").symlink_to(target)
    before = target.read_bytes()
    result = run_corral("fix", ".", cwd=root)
    assert "outside the project" in result.stderr
    assert target.read_bytes() == before


@pytest.mark.parametrize("cache_dir", ["/tmp/corral-abs-cache", "../..", "x/../../y"])
def test_cache_dir_outside_the_project_is_a_config_error(tmp_path: Path, cache_dir: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.corral]\ncache-dir = "{cache_dir}"\n')
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    result = run_corral("check", ".", cwd=tmp_path)
    assert result.returncode == 2 and "cache-dir must be a relative path" in result.stderr


def test_shipped_github_workflow_never_reads_a_cache_from_the_checkout() -> None:
    from linthelpers import ROOT

    workflow = (ROOT / "deploy" / "github" / "corral.yml").read_text()
    checks = [line for line in workflow.splitlines() if "corral check" in line]
    assert checks and all("--no-cache" in line for line in checks)


def test_a_worker_that_dies_costs_only_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faulthandler
    import signal

    from corral.lint_rules import engine, runner, workers
    from corral.lint_rules.cache import ResultCache

    real, parent = engine.check_module, os.getpid()

    def crashing(data: bytes, path: str, rules: object, **kw: object) -> object:
        if path == "crash.py" and os.getpid() != parent:
            faulthandler.disable()  # no stack dump in the test output
            os.kill(os.getpid(), signal.SIGSEGV)  # what a parser crash does to a worker
        return real(data, path, rules, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "check_module", crashing)  # forked workers inherit it
    monkeypatch.setattr(workers, "fork_safe", lambda: True)  # whatever threads other tests left
    padding = b"x = 1\n" * 20_000  # enough work to start the process pool
    files = []
    for name in ("a.py", "crash.py", "b.py", "c.py"):
        (tmp_path / name).write_bytes(b"import asyncio\n" + CALL + padding + name.encode())
        files.append((name, tmp_path / name))
    result = runner.check_files(files, ruleset(), ResultCache(None, "k"), jobs=2)
    by_file = {f.path: f.code for f in result.findings}
    assert by_file == {"a.py": "CRL201", "b.py": "CRL201", "c.py": "CRL201", "crash.py": "CRL901"}
    (crash,) = [f for f in result.findings if f.path == "crash.py"]
    assert "died" in crash.message
