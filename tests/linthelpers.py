"""Shared helpers for the linter tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corral.lint_rules.catalogue import Catalogue, load_catalogue
from corral.lint_rules.engine import check_text
from corral.lint_rules.findings import Finding
from corral.lint_rules.ruleset import RuleSet

ROOT = Path(__file__).resolve().parent.parent


def ruleset(strict: bool = True, catalogue: Catalogue | None = None) -> RuleSet:
    cat = catalogue or load_catalogue()
    return RuleSet.build(cat, [r.code for r in cat if strict or not r.strict])


def check(source: str, *, strict_rules: bool = True, strict: bool = False) -> list[Finding]:
    return check_text(source, "example.py", ruleset(strict_rules), strict=strict)


def run_corral(
    *args: str, cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "corral"), *args],
        cwd=cwd,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
