"""Hostile input never crashes the linter: each problem file gets CRL901, the rest is checked."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesmith
import pytest
from corral.lint_rules.engine import check_bytes, check_text
from hypothesis import HealthCheck, given, settings
from linthelpers import ruleset, run_corral

TRIGGER = b"import asyncio\nasyncio.create_task(job())\n"

HOSTILE: dict[str, bytes] = {
    "binary.py": bytes(range(256)) * 8,
    "latin1_no_cookie.py": "import threading\ns = 'caf\xe9'\nthreading.Thread()\n".encode(
        "latin-1"
    ),
    "syntax_error.py": TRIGGER + b"def broken(:\n    pass\n",
    "bad_cookie.py": b"# -*- coding: no-such-codec -*-\n" + TRIGGER,
    "null_bytes.py": TRIGGER + b"x = 1\x00\n",
    "deep_parens.py": TRIGGER + b"x = " + b"(" * 500 + b"1" + b")" * 500 + b"\n",
    "python2.py": TRIGGER + b"print 'hello'\n",
}
# checked normally (they must parse, with findings where there is raw concurrency)
READABLE: dict[str, tuple[bytes, list[str]]] = {
    "bom.py": (b"\xef\xbb\xbf" + TRIGGER, ["CRL201"]),
    "latin1_cookie.py": (
        b"# -*- coding: latin-1 -*-\nimport threading\ns = 'caf\xe9'\nthreading.Thread()\n",
        ["CRL101"],
    ),
    "type_alias_312.py": (TRIGGER + b"type Pair[T] = tuple[T, T]\n", ["CRL201"]),
    "generics_312.py": (
        TRIGGER + b"def first[T](xs: list[T]) -> T:\n    return xs[0]\nclass Box[T]:\n    pass\n",
        ["CRL201"],
    ),
    "type_defaults_313.py": (TRIGGER + b"def f[T = int](x: T) -> T:\n    return x\n", ["CRL201"]),
    "fstring_312.py": (TRIGGER + b'names = ["a"]\nmsg = f"{", ".join(names)}"\n', ["CRL201"]),
    "deep_binop.py": (TRIGGER + b"x = " + b"1 + " * 3000 + b"1\n", ["CRL201"]),
    "clean.py": (b"import asyncio\nasync def f():\n    await asyncio.sleep(0)\n", []),
}


def test_hostile_directory_reports_each_problem_file_and_checks_the_rest(tmp_path: Path) -> None:
    for name, data in HOSTILE.items():
        (tmp_path / name).write_bytes(data)
    for name, (data, _) in READABLE.items():
        (tmp_path / name).write_bytes(data)
    big = tmp_path / "big_10mb.py"
    # a generated module: 10 MB, mostly embedded data, with code at both ends
    blob = b'BLOB = """\n' + (b"q" * 99 + b"\n") * 95_000 + b'"""\n'
    big.write_bytes(
        b"import threading\n" + b"x = [1, 2, 3]\n" * 20_000 + blob + b"threading.Timer(1, f)\n"
    )
    assert big.stat().st_size > 9_500_000
    result = run_corral("check", "--no-cache", "--output-format", "json", ".", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    by_file: dict[str, list[str]] = {}
    for row in json.loads(result.stdout):
        by_file.setdefault(row["path"], []).append(row["code"])
    for name in HOSTILE:
        assert by_file.get(name) == ["CRL901"], (name, by_file.get(name))
    for name, (_, codes) in READABLE.items():
        assert by_file.get(name, []) == codes, name
    assert by_file["big_10mb.py"] == ["CRL101"]


def test_unreadable_findings_say_why_and_where() -> None:
    rules = ruleset()
    (latin,) = check_bytes(HOSTILE["latin1_no_cookie.py"], "l.py", rules)
    assert (latin.line, latin.col) == (2, 9)
    assert "cannot decode as utf-8: byte 0xe9" in latin.message
    assert "coding" in latin.message
    (syntax,) = check_bytes(HOSTILE["syntax_error.py"], "s.py", rules)
    assert syntax.line == 3 and "cannot parse" in syntax.message


def test_file_without_trigger_words_is_not_parsed() -> None:
    assert check_text("def broken(:\n", "x.py", ruleset()) == []


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # hypothesmith compiles what it generates
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(source=hypothesmith.from_grammar())
def test_generated_modules_never_crash_the_engine(source: str) -> None:
    rules = ruleset()
    # put the module behind trigger words so the full pipeline (parse, resolve) runs on it
    text = "import asyncio, threading\n" + source + "\nasyncio.create_task(x())\n"
    findings = check_text(text, "gen.py", rules)
    assert all(f.line >= 1 and f.col >= 1 for f in findings)
    codes = {f.code for f in findings}
    assert codes <= {"CRL201", "CRL101", "CRL102", "CRL202", "CRL203", "CRL204", "CRL205"} | {
        "CRL301",
        "CRL302",
        "CRL901",
        "CRL902",
        "CRL903",
    }


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_samples_in_process(name: str) -> None:
    data, codes = READABLE[name]
    assert [f.code for f in check_bytes(data, name, ruleset())] == codes
