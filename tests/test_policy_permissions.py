"""Scoped permission through the real CLI: one target allowed in some paths while its rule
stays on elsewhere, and a target only one module may use (judged by module name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from linthelpers import run_corral
from test_policy import write

POOLS = """\
from concurrent.futures import ProcessPoolExecutor as Pool, ThreadPoolExecutor
Pool()
ThreadPoolExecutor()
"""
THREADS = """\
import threading
class Worker(threading.Thread):
    pass
Worker()
threading.Timer(1, f)
"""


def _codes(stdout: str) -> list[tuple[str, int, str]]:
    return [(r["path"], r["line"], r["qualname"]) for r in json.loads(stdout)]


def test_per_target_allow_exempts_one_target_in_some_paths_only(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "pyproject.toml": """\
                [tool.corral.allow]
                "concurrent.futures.ProcessPoolExecutor" = ["tools/batch/**"]
            """,
            "tools/batch/run.py": POOLS,
            "svc/app.py": POOLS,
        },
    )
    result = run_corral("check", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert _codes(result.stdout) == [
        ("svc/app.py", 1, "concurrent.futures.ProcessPoolExecutor"),
        ("svc/app.py", 1, "concurrent.futures.ThreadPoolExecutor"),
        ("svc/app.py", 2, "concurrent.futures.ProcessPoolExecutor"),
        ("svc/app.py", 3, "concurrent.futures.ThreadPoolExecutor"),
        # in tools/batch only ProcessPoolExecutor is allowed: its rule, CRL102, stays on
        ("tools/batch/run.py", 1, "concurrent.futures.ThreadPoolExecutor"),
        ("tools/batch/run.py", 3, "concurrent.futures.ThreadPoolExecutor"),
    ]


def test_allowed_importer_is_judged_by_module_name_not_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "pyproject.toml": """\
                [tool.corral.allowed-importers]
                "threading.Thread" = ["acme.infra.threads"]
            """,
            "src/acme/__init__.py": "",
            "src/acme/infra/__init__.py": "",
            "src/acme/infra/threads/__init__.py": THREADS,
            "src/acme/infra/threads/pool.py": THREADS,
            "src/acme/billing.py": THREADS,
            # same file name, not the same module: a directory without __init__.py
            "scripts/acme/infra/threads/__init__.py": THREADS,
        },
    )
    result = run_corral("check", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    found = _codes(result.stdout)
    allowed = "src/acme/infra/threads"
    assert not [f for f in found if f[0].startswith(allowed) and f[2] == "threading.Thread"]
    # threading.Timer is not covered by the permission, even inside the allowed module
    assert (f"{allowed}/__init__.py", 5, "threading.Timer") in found
    assert (f"{allowed}/pool.py", 5, "threading.Timer") in found
    assert ("src/acme/billing.py", 2, "threading.Thread") in found
    assert ("src/acme/billing.py", 4, "threading.Thread") in found
    assert ("scripts/acme/infra/threads/__init__.py", 2, "threading.Thread") in found

    shown = run_corral("config", "--show-origin", cwd=tmp_path)
    assert (
        'file:pyproject.toml\tallowed-importers."threading.Thread" = ["acme.infra.threads"]'
        in shown.stdout.splitlines()
    )
    audit = json.loads(run_corral("audit", "--format", "json", cwd=tmp_path).stdout)
    assert audit["policy"]["allowed_importers"] == {"threading.Thread": ["acme.infra.threads"]}


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            '[tool.corral.allow]\n"concurrent.futures.ProcessPoolExecuter" = ["x/**"]\n',
            "'concurrent.futures.ProcessPoolExecuter' is not a banned target "
            "(did you mean 'concurrent.futures.ProcessPoolExecutor'?)",
        ),
        (
            '[tool.corral.allowed-importers]\n"threading.Thred" = ["a.b"]\n',
            "allowed-importers: 'threading.Thred' is not a banned target",
        ),
        (
            '[tool.corral.allowed-importers]\n"threading.Thread" = ["src/acme/threads.py"]\n',
            "'src/acme/threads.py' is not a dotted module name",
        ),
    ],
)
def test_a_permission_that_grants_nothing_is_a_config_error(
    tmp_path: Path, config: str, needle: str
) -> None:
    write(tmp_path, **{"pyproject.toml": config})
    result = run_corral("check", cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr and len(result.stderr.splitlines()) == 1
