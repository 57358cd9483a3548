"""Fuzzing the whole pipeline: generated modules and mutated real files never crash or hang
the linter, and every file is either checked (at least what the resolver alone finds) or
reported as CRL901.

Bounded for CI (fixed seeds); ``CORRAL_FUZZ_LONG=1`` runs ten times as many cases.
"""

from __future__ import annotations

import json
import os
import random
import sysconfig
import warnings
from pathlib import Path

import hypothesmith
import pytest
from corral.lint_rules.engine import check_bytes
from corral.lint_rules.resolver import resolve_module
from corral.lint_rules.source import Unreadable, decode, deep_recursion, parse
from hypothesis import HealthCheck, given, settings
from linthelpers import ROOT, ruleset, run_corral

SCALE = 10 if os.environ.get("CORRAL_FUZZ_LONG") else 1
SEED = 20261201
TRIGGERS = [
    b"import asyncio\n",
    b"x = 1; import threading\n",
    b"asyncio.create_task(job())\n",
    b"threading.Thread(target=f).start()\n",
    b'getattr(asyncio, "create_" + "task")(job())\n',
    b'__import__("\\x61syncio").ensure_future(job())\n',
    b"x = 1  # noqa: CRL999 reason='unknown code, suppresses nothing'\n",
]
DAMAGE = [
    b"\x00",
    b"\t",
    b"\r",
    b"\\\n",
    b"(",
    b")",
    b'f"{',
    b"# -*- coding: uft-8 -*-\n",
    b"# coding: utf-7\n",
    b"\xff",
    b"type X = int\n",
]


def _expected(data: bytes) -> tuple[bool, set[str]]:
    """(could it hide a finding and not parse, codes the resolver alone finds)."""
    text = decode(data)
    if isinstance(text, Unreadable):
        return True, set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = parse(text)
    rules = ruleset()
    if isinstance(tree, Unreadable):
        return rules.may_match(text), set()
    try:
        with deep_recursion():
            return False, {f.code for f in resolve_module(tree, rules, None)}
    except RecursionError:
        return True, set()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(data) + 1)
        choice = rng.random()
        if choice < 0.35:
            data = data[:where] + rng.choice(TRIGGERS) + data[where:]
        elif choice < 0.6:
            data = data[:where] + rng.choice(DAMAGE) + data[where:]
        elif choice < 0.75:
            data = data[:where] + data[where + rng.randint(1, 40) :]
        elif choice < 0.85:
            data = (
                data.replace(b"\n", b"\r") if rng.random() < 0.5 else data.replace(b"\n", b"\r\n")
            )
        else:
            depth = rng.choice([50, 250, 2_000])
            data = data[:where] + b"f(" * depth + b")" * depth + b"\n" + data[where:]
    return data


def _real_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = sorted(stdlib.glob("*.py"))[:150] + sorted((ROOT / "lint_rules").glob("*.py"))
    return [p for p in candidates if 0 < p.stat().st_size < 200_000]


def test_mutated_real_files_are_checked_or_reported(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sources = _real_files()
    cases: dict[str, bytes] = {}
    for i in range(300 * SCALE):
        cases[f"m{i:04d}.py"] = _mutate(rng.choice(sources).read_bytes(), rng)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    result = run_corral("check", "--no-cache", "--output-format", "json", ".", cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    reported: dict[str, set[str]] = {}
    for row in json.loads(result.stdout):
        reported.setdefault(row["path"], set()).add(row["code"])
    for name, data in cases.items():
        hidden, codes = _expected(data)
        got = reported.get(name, set())
        if hidden:
            assert "CRL901" in got, name
        else:
            assert codes <= got, (name, codes - got)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@settings(
    max_examples=300 * SCALE,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(source=hypothesmith.from_grammar())
def test_generated_modules_are_checked_or_reported(source: str) -> None:
    rng = random.Random(source)
    data = source.encode("utf-8", "surrogatepass")
    if rng.random() < 0.5:  # half as generated (valid), half damaged
        data = _mutate(data, rng)
    findings = check_bytes(data, "gen.py", ruleset())
    hidden, codes = _expected(data)
    got = {f.code for f in findings}
    if hidden:
        assert "CRL901" in got
    else:
        assert codes <= got, codes - got
