"""The pre-commit case pays only for what it uses: a one-file ``corral check`` imports no
module its answer does not need, builds only its own subcommand's parser, and reads the
parsed configuration back from the user's signed cache, never trusting a damaged entry."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest
from corral.lint_rules import cache
from corral.lint_rules.cli import _columns, build_parser
from corral.lint_rules.config import ConfigError, read_table

# what the one-file path used to import, none of which can change its answer
NOT_NEEDED = [
    "hashlib",  # OpenSSL: BLAKE2b is built in (lint_rules/digest.py)
    "_hashlib",
    "hmac",
    "secrets",
    "tempfile",  # only a write needs it
    "shutil",  # argparse's terminal width, read without it
    "datetime",  # today's date from time.strftime; tomllib needs it
    "tomllib",  # pyproject.toml read back from the cache
    "yaml",  # the catalogue read back from the cache
    "difflib",  # a typo hint in a config that has none
    "corral.lint_rules.baseline",  # no baseline file to apply
    "dataclasses",  # value classes are records (lint_rules/records.py) but one: runner._File
    "corral.lint_rules.adoption",  # subcommands check does not run
    "corral.lint_rules.policy_cli",
    "typing",  # annotations only, under TYPE_CHECKING (records.py marks dataclass_transform)
    "json",  # the parsed config and catalogue come back through marshal; JSON output only
    "tokenize",  # suppression comments and coding cookies only, where a file has them
    "token",
]

# What the stdlib modules the linter needs import themselves does not count (3.14's
# argparse brings dataclasses for its colours, and through inspect, ast): only what corral's
# own code adds.
CHECK_NEEDS = "argparse, ast, pathlib, re, unicodedata"
_RUN = """
import sys
import {preimport}
argparse.ArgumentParser(prog="x").add_argument("--y")
already = set(sys.modules)
from corral.lint_rules.cli import main
code = main(sys.argv[1:])
from corral.lint_rules import suppressions, spelling
lazy = [suppressions._ALLOW, suppressions._NOQA, spelling._ESCAPE]
print("COMPILED", sum(p._compiled is not None for p in lazy))
print("IMPORTED", *sorted(m for m in {modules!r} if m in sys.modules and m not in already))
sys.exit(code)
"""


def _check(
    project: Path,
    home: Path,
    *args: str,
    preimport: str = CHECK_NEEDS,
    modules: list[str] = NOT_NEEDED,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    script = _RUN.format(preimport=preimport, modules=modules)
    return subprocess.run(
        [sys.executable, "-c", script, "check", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.corral]\nignore = ["CRL102"]\n')
    (root / "app.py").write_text(
        "import threading\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "threading.Thread(target=print).start()\nThreadPoolExecutor(2)\n"
    )
    return root


def test_a_one_file_check_imports_nothing_it_does_not_need(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _check(project, home, "--no-cache", "--force-exclude", "app.py")
    assert first.returncode == 1, first.stderr
    second = _check(project, home, "--no-cache", "--force-exclude", "app.py")
    assert second.returncode == 1, second.stderr
    findings, imported = second.stdout.rsplit("IMPORTED", 1)
    assert imported.split() == []
    findings, compiled = findings.rsplit("COMPILED", 1)
    assert compiled.split() == ["0"]  # patterns of comments and escapes the file lacks
    assert findings == first.stdout.rsplit("COMPILED", 1)[0]
    assert "CRL101" in findings and "CRL102" not in findings  # the config was applied


def test_an_edited_config_is_read_again(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "CRL102" not in _check(project, home, "--no-cache", "app.py").stdout
    (project / "pyproject.toml").write_text('[tool.corral]\nignore = ["CRL101"]\n')
    out = _check(project, home, "--no-cache", "app.py").stdout
    assert "CRL102" in out and "CRL101" not in out


def test_a_damaged_or_foreign_config_entry_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.corral]\nselect = ["CRL1"]\n')
    assert read_table(config) == {"select": ["CRL1"]}
    (entry,) = (tmp_path / "home" / "corral").glob("toml-*.marshal")
    entry.write_bytes(entry.read_bytes().replace(b"CRL1", b"CRL2"))  # signature broken
    assert read_table(config) == {"select": ["CRL1"]}
    secret = cache.user_secret()
    assert secret is not None  # a well-signed entry that is not a table:
    entry.write_bytes(
        cache._signature(secret, entry.name, marshal.dumps([1])) + b"\n" + marshal.dumps([1])
    )
    assert read_table(config) == {"select": ["CRL1"]}
    body = b"\xff not marshal data"  # well signed, not readable
    entry.write_bytes(cache._signature(secret, entry.name, body) + b"\n" + body)
    assert read_table(config) == {"select": ["CRL1"]}


def test_toml_marshal_cannot_keep_is_read_right_and_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    config = tmp_path / "policy.toml"
    config.write_text("when = 2026-12-02\nratio = nan\n")
    for _ in range(2):
        table = read_table(config)
        assert str(table["when"]) == "2026-12-02" and table["ratio"] != table["ratio"]
    assert list((tmp_path / "home" / "corral").glob("toml-*.marshal")) == []


def test_invalid_toml_is_still_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.corral\n")
    with pytest.raises(ConfigError, match=r"pyproject\.toml: invalid TOML"):
        read_table(config)


def test_parsed_entries_are_bounded_per_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    for i in range(cache.PARSED_KEPT + 8):
        assert cache.parsed_through_cache("toml-test", f"x = {i}", lambda t: {"t": t}) == {
            "t": f"x = {i}"
        }
    kept = list((tmp_path / "home" / "corral").glob("toml-test-*.marshal"))
    assert len(kept) == cache.PARSED_KEPT


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["check", "--no-cache", "--force-exclude", "a.py", "b.py"],
        ["check", "--strict", "--output-format", "json", "--select", "CRL1", "src"],
        ["rules"],
        ["explain", "CRL101"],
    ],
)
def test_the_subcommand_parser_parses_like_the_whole_one(argv: list[str]) -> None:
    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))


def test_the_help_width_follows_columns_as_shutil_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    for value in ("57", "0", "nonsense", "-3"):
        monkeypatch.setenv("COLUMNS", value)
        assert _columns() == shutil.get_terminal_size().columns


def test_a_lazy_pattern_answers_as_the_compiled_one_and_compiles_once() -> None:
    import re

    from corral.lint_rules.patterns import LazyPattern

    lazy, eager = LazyPattern(r"n(o)qa", re.IGNORECASE), re.compile(r"n(o)qa", re.IGNORECASE)
    assert lazy._compiled is None
    text = "x = 1  # NOQA: E501\n# noqa\nnoq"
    for pos, end in ((0, len(text)), (3, 18), (9, 9)):
        for method in ("search", "match", "fullmatch"):
            got, want = (
                getattr(lazy, method)(text, pos, end),
                getattr(eager, method)(text, pos, end),
            )
            assert (got and got.span()) == (want and want.span())
        assert [m.span() for m in lazy.finditer(text, pos, end)] == [
            m.span() for m in eager.finditer(text, pos, end)
        ]
        assert lazy.findall(text, pos, end) == eager.findall(text, pos, end)
    assert lazy.split(text, 1) == eager.split(text, 1)
    assert lazy.sub(lambda m: m.group(1), text) == eager.sub(lambda m: m.group(1), text)
    assert lazy.compiled is lazy.compiled  # one compile, kept


def test_the_alphabet_makes_its_infixes_when_asked_and_makes_them_all() -> None:
    from corral.lint_rules.spelling import Alphabet

    names = ["asyncio.create_task", "threading.Thread", "os.fork"]
    alphabet = Alphabet.of(names)
    assert "infixes" not in vars(alphabet)
    assert alphabet.infixes == {
        n[i:j] for n in names for i in range(len(n)) for j in range(i + 1, len(n) + 1)
    }
    assert alphabet == Alphabet.of(reversed(names))  # equal records whatever was computed
    assert Alphabet.of(names) != Alphabet.of(names[:2])


def test_a_check_served_by_the_cache_imports_no_parser(project: Path, tmp_path: Path) -> None:
    """The pre-commit hook runs with the cache: when every file is a hit, neither ``ast``
    nor the resolver is imported (the first run parses; the second reads)."""
    parser = ["ast", "corral.lint_rules.engine", "corral.lint_rules.resolver"]
    home = tmp_path / "home"
    runs = [
        _check(project, home, "app.py", preimport="argparse, pathlib, re", modules=parser)
        for _ in range(2)
    ]
    (first_out, first), (second_out, second) = (r.stdout.rsplit("IMPORTED", 1) for r in runs)
    assert [r.returncode for r in runs] == [1, 1], runs[1].stderr
    assert set(parser[1:]) <= set(first.split())  # the cold run did parse
    assert second.split() == []
    assert second_out == first_out and "CRL101" in second_out
