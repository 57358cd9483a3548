"""The speed levers do what they claim (what they must not change, findings, is the
differential test's job): work that cannot change a finding is not done."""

from __future__ import annotations

import tokenize
from pathlib import Path

import pytest
from corral.lint_rules.engine import check_module
from corral.lint_rules.suppressions import may_suppress
from hypothesis import given, settings
from hypothesis import strategies as st
from linthelpers import ruleset


def _tokenized(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = tokenize.generate_tokens

    def counting(readline):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(readline)

    monkeypatch.setattr(tokenize, "generate_tokens", counting)  # imported where it is needed
    return calls


@pytest.mark.parametrize(
    "comment",
    ["# noqa: E501", "# noqa", "# NOQA: F401, E731", "# type: ignore  # noqa: B008"],
)
def test_a_noqa_for_another_linter_is_not_tokenized(
    monkeypatch: pytest.MonkeyPatch, comment: str
) -> None:
    calls = _tokenized(monkeypatch)
    data = f"import threading\nthreading.Thread()  {comment}\n".encode()
    assert [f.code for f in check_module(data, "x.py", ruleset())[0]] == ["CRL101"]
    assert calls == []


@pytest.mark.parametrize(
    ("comment", "codes"),
    [
        ("# noqa: CRL101", []),  # used, no reason needed outside strict mode
        ("# noqa: E501, crl101", []),
        ("# NoQA:CRL999", ["CRL101", "CRL903"]),
        ('# corral: allow[CRL101] reason="reviewed"', []),
    ],
)
def test_a_suppression_of_ours_is_still_found(
    monkeypatch: pytest.MonkeyPatch, comment: str, codes: list[str]
) -> None:
    calls = _tokenized(monkeypatch)
    data = f"import threading\nthreading.Thread()  {comment}\n".encode()
    assert sorted(f.code for f in check_module(data, "x.py", ruleset())[0]) == codes
    assert calls == [1]


def test_may_suppress_over_approximates_on_non_ascii_text() -> None:
    assert may_suppress("é = 1  # NOQA: CRL101\n")
    assert not may_suppress("é = 1  # noqa: E501\n")
    assert may_suppress("x = 1  # noqa: ACME101\n", ("CRL", "ACME"))
    assert not may_suppress("x = 1  # noqa: ACME101\n")


def test_the_tree_is_freed_before_the_collector_is_back_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import weakref

    from corral.lint_rules import engine

    trees: list[weakref.ref[object]] = []
    alive_at_enable: list[bool] = []
    real_parse = engine.parse

    def parse(text: str, path: str = "<unknown>"):  # type: ignore[no-untyped-def]
        tree = real_parse(text, path)
        trees.append(weakref.ref(tree))
        return tree

    class Collector:
        isenabled = staticmethod(lambda: True)
        disable = staticmethod(lambda: None)

        @staticmethod
        def enable() -> None:
            alive_at_enable.append(any(ref() is not None for ref in trees))

    monkeypatch.setattr(engine, "parse", parse)
    monkeypatch.setattr(engine, "gc", Collector)
    data = b"import threading\ndef f():\n    threading.Thread()\n" * 50
    assert check_module(data, "x.py", ruleset())[0]
    assert trees and alive_at_enable == [False]
    assert gc.isenabled()


_PART = st.sampled_from(
    [
        *("build", "dist", ".venv", "venv", "x", "pkg.egg-info", ".egg-info", "a.py"),
        *("build.py", "site-packages", "builds", "_build", "node_modules", ".git", "mod"),
    ]
)
_SIMPLE = st.sampled_from(
    ["build", "dist", ".venv", "*.egg-info", "site-packages", "*.py", ".git", "x", "_build"]
)


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(_SIMPLE, max_size=5),
    parts=st.lists(_PART, min_size=1, max_size=4),
    is_dir=st.booleans(),
)
def test_bare_name_patterns_match_like_pathspec(
    patterns: list[str], parts: list[str], is_dir: bool
) -> None:
    import pathspec
    from corral.lint_rules.discovery import PathMatcher

    matcher = PathMatcher(patterns)
    assert matcher.spec is None  # the fast path is the one under test
    relpath = "/".join(parts) + ("/" if is_dir else "")
    # pathspec 0.12 (the declared floor) answers None for "no pattern decides", later
    # releases False: both mean "not excluded"
    expected = bool(pathspec.GitIgnoreSpec.from_lines(patterns).match_file(relpath))
    assert matcher.matches(relpath) is expected
    # discovery asks a directory's path once and then each entry's name alone
    names = [p for p in parts if p]
    if names:
        above = "/".join(names[:-1])
        decomposed = (bool(above) and matcher.matches(above)) or matcher.matches_name(names[-1])
        assert decomposed is expected


def test_any_other_pattern_goes_to_pathspec() -> None:
    from corral.lint_rules.discovery import PathMatcher

    for pattern in ["runtime/**", "!keep", "build/", "/top", "a?c", "[ab]", "# c", " x", "*"]:
        assert PathMatcher(["build", pattern]).spec is not None, pattern
    assert not PathMatcher(["build", "!build"]).matches("build/x.py")


_LOAD = (
    "import sys\n"
    "from corral.lint_rules.catalogue import parse_catalogue\n"
    "from importlib import resources\n"
    "text = resources.files('corral.lint_rules').joinpath('rules.yaml').read_text('utf-8')\n"
    "cat = parse_catalogue(text + sys.argv[1], 'rules.yaml')\n"
    "print(cat.version, len(cat.rules), 'yaml' in sys.modules)\n"
)


def _load(home: Path, extra: str = "") -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, extra], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def test_the_parsed_catalogue_is_cached_and_never_trusted_when_damaged(tmp_path: Path) -> None:
    first = _load(tmp_path)
    assert first.endswith("True")  # parsed with the YAML parser, then cached
    version_and_count = first.rsplit(" ", 1)[0]
    assert _load(tmp_path) == f"{version_and_count} False"  # from the cache, no YAML import
    (entry,) = (tmp_path / "corral").glob("catalogue-*.marshal")
    data = entry.read_bytes()
    # damaged body, or a body signed by another key: parsed again, same catalogue
    entry.write_bytes(data.replace(b"rules", b"rulez", 1))
    assert _load(tmp_path) == f"{version_and_count} True"
    entry.write_bytes(b"corral-signed 00\n" + data.partition(b"\n")[2])
    assert _load(tmp_path) == f"{version_and_count} True"
    # a changed catalogue text is another entry: never the old data
    changed = _load(tmp_path, "\n# a comment changes the text, not the rules\n")
    assert changed == f"{version_and_count} True"
    assert len(list((tmp_path / "corral").glob("catalogue-*.marshal"))) == 2


def test_no_content_is_hashed_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.lint_rules import runner
    from corral.lint_rules.cache import ResultCache

    hashed: list[int] = []
    real = runner.content_hash
    monkeypatch.setattr(runner, "content_hash", lambda data: hashed.append(1) or real(data))
    files = []
    for name, text in (("a.py", "import threading\nthreading.Thread()\n"), ("b.py", "x = 1\n")):
        (tmp_path / name).write_text(text)
        files.append((name, tmp_path / name))
    uncached = runner.check_files(files, ruleset(), ResultCache(None, "k"), jobs=1)
    assert hashed == []
    cache = ResultCache(tmp_path / "cache", "k", secret=b"s" * 32, root=tmp_path)
    cached = runner.check_files(files, ruleset(), cache, jobs=1)
    assert len(hashed) == 2
    assert uncached.findings == cached.findings
    assert [f.code for f in cached.findings] == ["CRL101"]


def test_a_cache_restored_from_another_machine_is_ignored(tmp_path: Path) -> None:
    """What restoring .corral_cache in CI would give: the runner's key is new, so a cache
    another runner signed (even correctly, with its own key) is never read."""
    from corral.lint_rules.cache import ResultCache, content_hash

    data = b"import threading\nthreading.Thread()\n"
    other = ResultCache(tmp_path / ".corral_cache", "k", secret=b"a" * 32, root=tmp_path)
    other.put(content_hash(data), [])  # "no findings", validly signed by the other key
    other.put_facts(content_hash(data), {}, [])
    other.save({content_hash(data)})
    assert ResultCache(tmp_path / ".corral_cache", "k", secret=b"a" * 32, root=tmp_path).entries
    here = ResultCache(tmp_path / ".corral_cache", "k", secret=b"b" * 32, root=tmp_path)
    assert here.entries == {} and here.facts == {} and here.stats == {}
