"""The fast path finds exactly what the reference path finds.

The reference path (``reference=True``) takes no shortcut: no prefilter, no per-function
skip, every file tokenized for suppressions, no worker processes. Every speed change is held
to it here, on a bounded sample of the running interpreter's own stdlib (found through
sysconfig, so the 3.13/3.14 chroots check their own) and on generated modules with banned
calls planted in nested bodies. Any difference in any field of any finding fails.

``CORRAL_DIFF_FULL=1`` compares the whole stdlib instead of the sample.
"""

from __future__ import annotations

import ast
import os
import random
import sysconfig
import warnings
from collections import Counter
from pathlib import Path

import hypothesmith
import pytest
from corral.lint_rules.cache import ResultCache
from corral.lint_rules.engine import (
    check_bytes,
    check_module,
    check_text,
    check_text_without_fallback,
    check_tree,
)
from corral.lint_rules.findings import Finding
from corral.lint_rules.ruleset import RuleSet
from corral.lint_rules.runner import check_files
from corral.lint_rules.source import Unreadable, decode, parse
from corral.lint_rules.suppressions import may_suppress
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linthelpers import ruleset

FULL = bool(os.environ.get("CORRAL_DIFF_FULL"))
SAMPLE_BYTES = 3_000_000  # about 10 s for both paths on a loaded 2-core machine

Row = tuple[object, ...]


def _rows(findings: list[Finding]) -> list[Row]:
    """Every field, the ones equality leaves out (qualname, kind, evades) included."""
    return sorted(
        (
            f.path,
            f.line,
            f.col,
            f.code,
            f.message,
            f.end_line,
            f.end_col,
            f.source,
            f.qualname,
            f.kind,
            f.evades,
        )
        for f in findings
    )


def _stdlib_sample() -> list[Path]:
    """A deterministic spread over the stdlib: every k-th file (sorted by path) so that the
    sample stays under SAMPLE_BYTES, plus the asyncio, concurrent and multiprocessing
    packages, where most findings are."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    if FULL:
        return files
    dense = [p for p in files if p.parent.name in ("asyncio", "concurrent", "futures")]
    dense = [p for p in dense if p.stat().st_size < 200_000][:60]
    budget = SAMPLE_BYTES - sum(p.stat().st_size for p in dense)
    total = sum(p.stat().st_size for p in files)
    stride = max(1, round(total / max(budget, 1)))
    picked = dict.fromkeys([*dense, *files[::stride]])
    return list(picked)


def _could_hide_nothing(path: str, rules: RuleSet) -> bool:
    """The file decodes, and neither the prefilter nor the suppression gate lets it through:
    by design (issue 13, CRL901 docs) a parse error is reported only where the file could
    hide a finding, and decode errors everywhere."""
    text = decode(Path(path).read_bytes())
    if isinstance(text, Unreadable):
        return False
    return not rules.may_match(text, path) and not may_suppress(text, rules.prefixes)


def assert_same_findings(fast: list[Finding], slow: list[Finding], rules: RuleSet) -> None:
    """Equal in every field, except the parse errors (CRL901) the reference reports for
    files that could hide nothing, which the fast path by design does not parse."""
    left, right = Counter(_rows(fast)), Counter(_rows(slow))
    assert not left - right, "the fast path reports what the reference does not"
    for row in right - left:
        path, code, message = str(row[0]), row[3], str(row[4])
        assert code == "CRL901" and message.startswith("cannot parse"), row
        assert _could_hide_nothing(path, rules), row


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "default"])
def test_stdlib_sample_fast_equals_reference(strict: bool) -> None:
    files = [(str(p), p) for p in _stdlib_sample()]
    rules = ruleset(strict)
    fast = check_files(files, rules, ResultCache(None, "diff"), jobs=2)
    slow = check_files(files, rules, ResultCache(None, "diff"), reference=True)
    assert slow.findings, "the sample must hold findings, or it proves nothing"
    assert slow.parsed == len(files)
    assert_same_findings(fast.findings, slow.findings, rules)


SUBCLASSES = {
    "pkg/__init__.py": "",
    "pkg/workers.py": "import threading\n\n\nclass Poller(threading.Thread):\n    pass\n",
    "pkg/fast.py": "from .workers import Poller\n\n\nclass Fast(Poller):\n    pass\n",
    "pkg/app.py": "from .workers import Poller\nfrom . import fast\n\nPoller()\nfast.Fast()\n",
}


def test_warm_runs_equal_reference(tmp_path: Path) -> None:
    """The cache's shortcuts: stat records, and the index pass's outcome read back whole
    when every file hits. A cold run, a warm one and one that reads the outcome back (as
    the run before recorded it) all equal the reference."""
    for name, text in SUBCLASSES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    dense = [p for p in _stdlib_sample() if p.parent.name in ("asyncio", "concurrent", "futures")]
    paths = [*dense[:40], *sorted((tmp_path / "pkg").glob("*.py"))]
    files = [(str(p), p) for p in paths]
    rules = ruleset()
    slow = check_files(files, rules, ResultCache(None, "diff"), reference=True)
    assert slow.index and slow.findings
    for run in ("cold", "warm", "read back"):
        cache = ResultCache(tmp_path / ".cache", "diff", secret=b"d" * 32, root=tmp_path)
        fast = check_files(files, rules, cache, jobs=1)
        assert (fast.parsed > 0) == (run == "cold"), run
        assert fast.index == slow.index, run
        assert_same_findings(fast.findings, slow.findings, rules)
        assert cache.runs, "the outcome is recorded for the next run"


def test_a_parse_error_is_left_out_only_where_nothing_could_hide(tmp_path: Path) -> None:
    """What the comparison above allows, and no more: a file that cannot be parsed and
    names nothing watched gives no CRL901 on the fast path; one that names a watched
    module does, on both."""
    rules = ruleset()
    quiet, loud = tmp_path / "quiet.py", tmp_path / "loud.py"
    quiet.write_text("print 'python 2'\n")
    loud.write_text("import threading\nthreading.Thread()\nprint 'python 2'\n")
    files = [(str(quiet), quiet), (str(loud), loud)]
    fast = check_files(files, rules, ResultCache(None, "diff"), jobs=1).findings
    slow = check_files(files, rules, ResultCache(None, "diff"), reference=True).findings
    assert [(f.path, f.code) for f in fast] == [(str(loud), "CRL901")]
    assert sorted((f.path, f.code) for f in slow) == sorted(
        [(str(loud), "CRL901"), (str(quiet), "CRL901")]
    )
    assert_same_findings(fast, slow, rules)
    with pytest.raises(AssertionError):  # a CRL901 lost where a finding could hide
        assert_same_findings([], slow, rules)


# what gets planted: a module-level binding, then a use nested in a function/class body
PLANTS = [
    ("import asyncio", "asyncio.create_task(job())"),
    ("import asyncio as aio", "aio.ensure_future(job())"),
    ("import threading", "threading.Thread(target=work).start()"),
    ("from threading import Thread", "Thread(target=work)"),
    ("from concurrent import futures", "futures.ThreadPoolExecutor(4)"),
    ("import asyncio", 'getattr(asyncio, "create_" + "task")(job())'),
    ("import importlib", 'importlib.import_module("thread" + "ing").Thread()'),
    ("import asyncio", "loop = asyncio.get_running_loop(); loop.call_soon(work)"),
    ("import threading", 'threading.Thread(target=work)  # noqa: CRL101 reason="planted"'),
    ("import threading", 'threading.Thread(target=work)  # corral: allow[CRL101] reason="x"'),
    ("import threading", "threading.Thread(target=work)  # noqa: E501"),
    ("", "x = 1  # noqa: CRL101"),
    ("import multiprocessing", 'multiprocessing.get_context("spawn").Process(target=work)'),
    # names folded from pieces the prefilter and the skip must see as spellable
    ("import importlib", 'importlib.import_module("%sasyncio" % "").create_task(job())'),
    ("import sys", 'getattr(sys.modules["asyn" + "cio"], "{}_future".format("ensure"))(job())'),
    ("import asyncio", 'getattr(asyncio, ("%" + "screate_task") % "")(job())'),
    # names bound at module level to a lookup's result, used in nested bodies
    (
        'import importlib; mod = importlib.import_module("asyncio")',
        'getattr(mod, "create_" + "task")(job())',
    ),
    ('import asyncio; launch = getattr(asyncio, "create_" + "task")', "launch(job())"),
    (
        'import importlib; m = importlib.import_module("asyncio")',
        'm.tasks["create_" "task"](job())',
    ),
]


def _bodies(tree: ast.Module) -> list[list[ast.stmt]]:
    """Every statement list nested inside a function or class (the per-function skip's
    territory), innermost last."""
    found: list[list[ast.stmt]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(node.body)
            for child in ast.walk(node):
                for name in ("body", "orelse", "finalbody"):
                    body = getattr(child, name, None)
                    if child is not node and isinstance(body, list) and body:
                        if isinstance(body[0], ast.stmt):
                            found.append(body)
    return found


TEMPLATE = """\
def outer(a, *args, **kwargs):
    pass
    class Inner:
        def method(self):
            pass
    async def coro():
        pass
    lam = lambda: None
"""


def _planted(sources: list[str], picks: list[int], where: list[int]) -> str | None:
    """Generated statements at module level and inside nested function, method and
    coroutine bodies (the per-function skip's territory), with the chosen plants put into
    those bodies; None if a piece does not parse here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pieces = [ast.parse(source).body for source in sources]
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        tree = ast.parse(TEMPLATE)
        outer = tree.body[0]
        assert isinstance(outer, ast.FunctionDef)
        inner, coro = outer.body[1], outer.body[2]
        assert isinstance(inner, ast.ClassDef) and isinstance(coro, ast.AsyncFunctionDef)
        method = inner.body[0]
        assert isinstance(method, ast.FunctionDef)
        slots = [tree.body, outer.body, method.body, coro.body]
        for piece, slot in zip(pieces, slots, strict=False):
            slot[0:0] = piece
        bodies = _bodies(tree)
        heads: list[str] = []
        for pick, spot in zip(picks, where, strict=True):
            head, use = PLANTS[pick]
            if head:
                heads.append(head)
            body = bodies[spot % len(bodies)]
            body[spot % len(body) : spot % len(body)] = ast.parse(use).body
        try:
            text = ast.unparse(tree)
        except (ValueError, RecursionError):
            return None
    # comments do not survive unparse: put each plant's comment back on its line
    lines = text.splitlines()
    for pick in picks:
        head, use = PLANTS[pick]
        if "#" in use:
            code, comment = use.split("  #", 1)
            for i, line in enumerate(lines):
                if line.strip() == code.strip() and "#" not in line:
                    lines[i] = f"{line}  #{comment}"
                    break
    return "\n".join([*dict.fromkeys(heads), *lines]) + "\n"


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    sources=st.lists(hypothesmith.from_grammar(), min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
    strict=st.booleans(),
)
def test_generated_modules_fast_equals_reference(
    sources: list[str], seed: int, strict: bool
) -> None:
    # plants and places from a seeded generator: an even spread over every plant, which
    # hypothesis's small-first integers would not give
    rng = random.Random(seed)
    picks = [rng.randrange(len(PLANTS)) for _ in range(rng.randint(1, 4))]
    planted = _planted(sources, picks, [rng.randrange(1_000) for _ in picks])
    if planted is None:
        return
    data = planted.encode("utf-8", "surrogatepass")
    rules = ruleset(strict)
    reference, _ = check_module(data, "gen.py", rules, reference=True)
    expected = _rows(reference)
    # every entry point: the CLI's (check_module), stdin's (check_bytes), the language
    # server's (check_text) and the flake8 plugin's (check_tree on its own parse)
    assert _rows(check_module(data, "gen.py", rules)[0]) == expected
    assert _rows(check_bytes(data, "gen.py", rules)) == expected
    text = decode(data)
    if isinstance(text, Unreadable):
        return
    assert _rows(check_text(text, "gen.py", rules)) == expected
    quick = check_text_without_fallback(text, "gen.py", rules)  # the server's inline path
    assert quick is None or _rows(quick) == expected
    tree = parse(text, "gen.py")
    if not isinstance(tree, Unreadable):
        assert _rows(check_tree(tree, text, "gen.py", rules)) == expected


def test_planting_reaches_nested_bodies() -> None:
    """The generator really puts banned calls where the per-function skip decides."""
    planted = _planted(["x = 1\n"], [0], [3])
    assert planted is not None
    assert "            asyncio.create_task(job())" in planted  # in Inner.method
    found = check_module(planted.encode(), "gen.py", ruleset(), reference=True)[0]
    assert [(f.code, f.line) for f in found] == [("CRL201", 10)]


def test_reference_path_takes_no_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken prefilter, a broken per-function skip or a broken suppression gate changes
    the fast path only: the comparison above would see each of them."""
    from corral.lint_rules import suppressions
    from corral.lint_rules.resolver import Resolver
    from corral.lint_rules.ruleset import RuleSet

    rules = ruleset()
    nested = b"import threading\ndef f():\n    def g():\n        threading.Thread()\n"
    noqa = b"import threading\nx = 1  # noqa: CRL101\n"

    def codes(data: bytes, reference: bool) -> list[str]:
        return [f.code for f in check_module(data, "p.py", rules, reference=reference)[0]]

    assert codes(nested, False) == codes(nested, True) == ["CRL101"]
    assert codes(noqa, False) == codes(noqa, True) == ["CRL903"]
    monkeypatch.setattr(RuleSet, "may_match", lambda self, text, path=None: False)
    assert (codes(nested, False), codes(nested, True)) == ([], ["CRL101"])
    monkeypatch.undo()
    monkeypatch.setattr(Resolver, "_may_contain_findings", lambda self, node: False)
    assert (codes(nested, False), codes(nested, True)) == ([], ["CRL101"])
    monkeypatch.undo()
    monkeypatch.setattr(suppressions, "may_suppress", lambda text, prefixes=(): False)
    assert (codes(noqa, False), codes(noqa, True)) == ([], ["CRL903"])


@pytest.mark.parametrize("strict", [False, True])
def test_check_tree_skips_only_files_with_nothing_to_report(strict: bool) -> None:
    """check_tree returns early for a file the prefilter rules out and holding no suppression
    comment; a suppression comment alone (unused, no reason) still reports like check_text."""
    rules = ruleset(strict)
    for text in (
        "x = 1\n",
        "x = 1  # corral: allow[CRL101]\n",
        'x = 1  # corral: allow[CRL101] reason="old"\n',
    ):
        tree = ast.parse(text)
        assert _rows(check_tree(tree, text, "t.py", rules)) == _rows(
            check_text(text, "t.py", rules)
        )
    text = "x = 1  # corral: allow[CRL101]\n"
    assert check_tree(ast.parse(text), text, "t.py", rules)  # no reason: still reported
