"""examples/policy-pack installed with pip into a fresh venv, then used by a project there.

The venv sees this environment's packages (corral included) through a ``.pth`` file, the way
``--system-site-packages`` would for a system interpreter, so the only thing pip installs is
the pack: a real build and a real ``corral.policies`` entry point, in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from linthelpers import ROOT

PACK_SOURCE = ROOT / "examples" / "policy-pack"


def _run(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_", "PIP_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pack-install")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=base, check=True)
    python = venv / "bin" / "python"
    purelib = _run(
        str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    pack = base / "policy-pack"  # build from a copy: the build writes next to the sources
    shutil.copytree(PACK_SOURCE, pack)
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    if all(importlib.util.find_spec(m) is not None for m in ("setuptools", "wheel")):
        install += ["--no-build-isolation", "--no-index"]
    _run(*install, str(pack), cwd=base, check=True)
    assert list(Path(purelib).glob("acme_policy-1.2.0.dist-info")), "pip did not install the pack"
    return python


def _corral(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(str(python), "-m", "corral.lint_rules.cli", *args, cwd=cwd)


def _service(root: Path, config: str) -> Path:
    files = {
        "pyproject.toml": "[tool.corral]\n" + textwrap.dedent(config),
        "svc/jobs.py": """\
            import importlib
            from sched import scheduler as Every
            jobs = Every()
            importlib.import_module("threading").Thread  # corral: allow[CRL301] reason="plugin"
        """,
        # the pack allows ProcessPoolExecutor under tools/batch, and threading.Thread in the
        # module acme.infra.threads only
        "tools/batch/run.py": "from concurrent.futures import ProcessPoolExecutor\n"
        "ProcessPoolExecutor()\n",
        "src/acme/__init__.py": "",
        "src/acme/infra/__init__.py": "",
        "src/acme/infra/threads.py": "import threading\nthreading.Thread(target=f).start()\n",
        "svc/workers.py": "import threading, concurrent.futures as cf\n"
        "threading.Thread(target=f).start()\ncf.ProcessPoolExecutor()\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_installed_pack_is_found_by_entry_point_and_enforced(
    venv_python: Path, tmp_path: Path
) -> None:
    root = _service(tmp_path, 'extends = "acme_policy"\n')
    check = _corral(venv_python, "check", "--format", "json", cwd=root)
    assert check.returncode == 1, check.stderr
    rows = [(r["path"], r["line"], r["code"]) for r in json.loads(check.stdout)]
    assert rows == [
        ("svc/jobs.py", 2, "ACME101"),  # the import of the alias
        ("svc/jobs.py", 3, "ACME101"),  # its call
        ("svc/jobs.py", 4, "CRL301"),  # no-suppress: the comment does not suppress ...
        ("svc/jobs.py", 4, "CRL904"),  # ... and is itself a finding
        ("svc/workers.py", 2, "CRL101"),  # allowed in acme.infra.threads, not here
        ("svc/workers.py", 3, "CRL102"),  # allowed in tools/batch, not here
    ]
    tests = _corral(venv_python, "rules", "--test", cwd=root)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_installed_pack_precedence_origins_and_audit_version(
    venv_python: Path, tmp_path: Path
) -> None:
    root = _service(
        tmp_path,
        """\
        extends = "acme_policy:policy.toml"
        rules-version = "1.0"
        no-suppress = ["CRL201"]
        """,
    )
    shown = _corral(venv_python, "config", "--show-origin", cwd=root)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert 'file:pyproject.toml\trules-version = "1.0"' in lines
    assert 'pack:acme_policy:policy.toml\tno-suppress = ["CRL301"]' in lines
    assert 'file:pyproject.toml\tno-suppress += ["CRL201"]' in lines
    assert 'pack:acme_policy:policy.toml\tselect = ["CRL", "ACME"]' not in lines
    assert any(line.startswith("# pack acme_policy:policy.toml 1.2.0") for line in lines)
    audit = _corral(venv_python, "audit", "--format", "json", cwd=root)
    assert audit.returncode == 0, audit.stderr
    packs = json.loads(audit.stdout)["policy"]["packs"]
    assert [(p["name"], p["version"]) for p in packs] == [("acme_policy:policy.toml", "1.2.0")]
    markdown = _corral(venv_python, "audit", cwd=root).stdout
    assert "`acme_policy:policy.toml` 1.2.0" in markdown
