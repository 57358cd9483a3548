"""Services that only use the runtime must not pay for the linter's dependencies."""

from __future__ import annotations

import subprocess
import sys


def test_import_corral_does_not_import_linter_dependencies() -> None:
    code = (
        "import sys, corral\n"
        "heavy = [m for m in ('libcst', 'flake8', 'yaml', 'pathspec', 'corral.lint_rules',"
        " 'pygls', 'lsprotocol', 'cattrs')"
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


def test_every_public_name_is_exported_and_importable() -> None:
    import corral

    assert set(corral.__all__) == {*corral._EXPORTS, "__version__"}
    for name in corral.__all__:
        assert getattr(corral, name) is not None, name


def test_the_linter_does_not_load_the_runtime() -> None:
    code = (
        "import sys, corral.lint_rules.cli\n"
        "print(any(m in sys.modules for m in ('corral.queue', 'anyio', 'prometheus_client')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_the_cli_loads_the_language_server_only_for_corral_server() -> None:
    """pygls and lsprotocol are an optional extra: ``corral check`` must not need them."""
    code = (
        "import sys\n"
        "from corral.lint_rules.cli import main\n"
        "main(['rules'])\n"
        "lsp = ('pygls', 'lsprotocol', 'corral.lint_rules.server')\n"
        "print(any(m in sys.modules for m in lsp))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_the_language_server_starts_without_libcst() -> None:
    """LibCST is loaded on the first quick fix, never to start or to publish diagnostics."""
    code = "import sys, corral.lint_rules.server\nprint('libcst' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
