"""Package metadata a user's pip sees: version, license, and extras that cover what they run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import metadata, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_version_is_read_from_the_installed_metadata(tmp_path: Path) -> None:
    """A distribution found first on sys.path decides ``__version__``: no second copy in code."""
    info = tmp_path / "corral-9.8.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corral\nVersion: 9.8.7\n")
    code = "import sys; sys.path.insert(0, sys.argv[1]); import corral; print(corral.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert out == "9.8.7\n"


def test_license_is_an_spdx_expression_with_its_file() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text
    installed = metadata("corral")
    assert installed["License-Expression"] == "MIT"
    assert "LICENSE" in (installed.get_all("License-File") or [])


def test_the_example_extra_covers_what_the_example_service_imports() -> None:
    """``pip install 'corral[example]'`` then ``uvicorn ...`` as documented needs nothing else."""
    app = ROOT / "examples" / "service" / "app.py"
    tree = ast.parse(app.read_text(encoding="utf-8"))
    modules = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0)
        for alias in node.names
    }
    third_party = modules - set(sys.stdlib_module_names) - {"corral"}
    owners = packages_distributions()
    needed = {owners[m][0].lower().replace("_", "-") for m in third_party}
    provided = {requirement_name(r) for r in PROJECT["dependencies"]}
    provided |= {requirement_name(r) for r in PROJECT["optional-dependencies"]["example"]}
    assert needed <= provided, needed - provided
    assert "uvicorn" in provided  # the server the docstring and README run it with
    docstring = ast.get_docstring(tree) or ""
    assert "pip install 'corral[example]'" in docstring


def test_the_otel_extra_is_the_api_alone() -> None:
    assert [requirement_name(r) for r in PROJECT["optional-dependencies"]["otel"]] == [
        "opentelemetry-api"
    ]
