"""Services that only use the runtime must not pay for the linter's dependencies."""

from __future__ import annotations

import subprocess
import sys


def test_import_corral_does_not_import_linter_dependencies() -> None:
    code = (
        "import sys, corral\n"
        "heavy = [m for m in ('libcst', 'flake8', 'yaml', 'pathspec', 'corral.lint_rules')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_linter_imports_without_the_runtime_heavy_parts() -> None:
    code = "import sys, corral.lint_rules.cli\nprint('libcst' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", (
        "libcst is loaded only for the parse fallback and fixes"
    )


def test_import_corral_does_not_import_sentry() -> None:
    """Sentry is used only when the service initialised it, which means it imported it."""
    code = "import sys, corral\nprint('sentry_sdk' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False"
