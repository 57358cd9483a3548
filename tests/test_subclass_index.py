"""Thread/Process subclasses defined in one module and instantiated in another module of the
same project: the project-wide subclass index, cached with the per-file results."""

from __future__ import annotations

import json
import time
from pathlib import Path

from linthelpers import run_corral

WORKERS = """\
import threading
import multiprocessing


class Poller(threading.Thread):
    pass


class Crunch(multiprocessing.Process):
    pass


class Plain:
    pass
"""


def _project(root: Path) -> Path:
    files = {
        "pyproject.toml": "[tool.corral]\n",
        "pkg/__init__.py": "",
        "pkg/workers.py": WORKERS,
        "pkg/fast.py": "from .workers import Poller\n\n\nclass Fast(Poller):\n    pass\n",
        "pkg/app.py": (
            "from .workers import Poller, Plain\n"
            "from pkg.workers import Crunch as C\n"
            "import pkg.workers as w\n\n"
            "Poller().start()\n"
            "C()\n"
            "Plain()\n\n\n"
            "def later():\n"
            "    return w.Poller()\n"
        ),
        "pkg/main.py": "from pkg.fast import Fast\n\nFast().start()\n",
        "pkg/other.py": "class Poller:\n    pass\n",
        "pkg/lookalike.py": "from .other import Poller\n\nPoller()\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _check(root: Path) -> list[tuple[str, int, str, str]]:
    result = run_corral("check", "--output-format", "json", cwd=root)
    assert result.returncode in (0, 1), result.stderr
    return [(r["path"], r["line"], r["code"], r["message"]) for r in json.loads(result.stdout)]


def test_subclasses_are_found_across_modules_and_warm_runs_agree(tmp_path: Path) -> None:
    root = _project(tmp_path)
    cold = _check(root)
    across = [(p, line, code) for p, line, code, _ in cold if p != "pkg/workers.py"]
    assert across == [
        ("pkg/app.py", 5, "CRL101"),
        ("pkg/app.py", 6, "CRL102"),
        ("pkg/app.py", 11, "CRL101"),
        ("pkg/main.py", 3, "CRL101"),
    ]
    messages = {(p, line): m for p, line, _, m in cold}
    assert messages[("pkg/app.py", 5)].startswith(
        "instance of `Poller`, a subclass of `threading.Thread`"
    )
    assert "`Fast`, a subclass of `threading.Thread` via `Poller`" in messages[("pkg/main.py", 3)]
    assert _check(root) == cold  # warm: read back from the cache

    # the index is part of what a cached result depends on: an edit to the defining module
    # changes the importers' findings on the next (warm) run
    time.sleep(0.01)
    (root / "pkg" / "workers.py").write_text(WORKERS.replace("(threading.Thread)", ""))
    after = [(p, line, code) for p, line, code, _ in _check(root)]
    assert ("pkg/app.py", 5, "CRL101") not in after and ("pkg/main.py", 3, "CRL101") not in after
    assert ("pkg/app.py", 6, "CRL102") in after


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)


def test_a_module_imported_by_name_reaches_its_subclasses(tmp_path: Path) -> None:
    """``from . import workers; workers.Poller()`` and the absolute and aliased spellings."""
    _write(
        tmp_path,
        {
            "pyproject.toml": "[tool.corral]\n",
            "pkg/__init__.py": "",
            "pkg/workers.py": WORKERS,
            "pkg/other.py": "class Poller:\n    pass\n",
            "pkg/relative.py": (
                "from . import workers\n\n"
                "workers.Poller().start()\n\n\n"
                "def later():\n"
                "    return workers.Crunch()\n"
            ),
            "pkg/absolute.py": (
                "from pkg import other, workers\n\nworkers.Poller()\nother.Poller()\n"
            ),
            "pkg/aliased.py": (
                "from pkg import workers as w\nimport pkg.workers as pw\n\n"
                "w.Crunch()\npw.Poller()\n"
            ),
            "pkg/sub/__init__.py": "",
            "pkg/sub/deep.py": "from .. import workers\n\nworkers.Poller()\n",
            # look-alikes: a plain class of the module, a same-named class elsewhere, rebinding
            "pkg/plain.py": "from . import workers\n\nworkers.Plain()\n",
            "pkg/lookalike.py": "from . import other\n\nother.Poller()\n",
            "pkg/rebound.py": ("from . import workers\n\nworkers = object()\nworkers.Poller()\n"),
        },
    )
    found = {(p, line, code) for p, line, code, _ in _check(tmp_path) if p != "pkg/workers.py"}
    assert found == {
        ("pkg/relative.py", 3, "CRL101"),
        ("pkg/relative.py", 7, "CRL102"),
        ("pkg/absolute.py", 3, "CRL101"),
        ("pkg/aliased.py", 4, "CRL102"),
        ("pkg/aliased.py", 5, "CRL101"),
        ("pkg/sub/deep.py", 3, "CRL101"),
    }


def test_imports_the_line_scan_missed_reach_the_index(tmp_path: Path) -> None:
    """Imports after ``;`` or ``:``, on continuation lines, and in a utf-7 file (whose module
    name has no ASCII spelling in its bytes) are seen by the import scan."""
    utf7 = b"# -*- coding: utf-7 -*-\nfrom pkg.my+AF8-workers import Poller\n\nPoller()\n"
    _write(
        tmp_path,
        {
            "pyproject.toml": "[tool.corral]\n",
            "pkg/__init__.py": "",
            "pkg/my_workers.py": WORKERS,
            "pkg/semicolon.py": "x = 1; from .my_workers import Poller\n\nPoller()\n",
            "pkg/colon.py": "if True: from pkg.my_workers import Crunch\n\nCrunch()\n",
            "pkg/continued.py": "from pkg.my_workers \\\n    import Poller\n\nPoller()\n",
            "pkg/parenthesised.py": (
                "from pkg import (  # the workers ) module\n    my_workers,\n)\n\n"
                "my_workers.Poller()\n"
            ),
            "pkg/utf7.py": utf7,
        },
    )
    found = {(p, line, code) for p, line, code, _ in _check(tmp_path) if p != "pkg/my_workers.py"}
    assert found == {
        ("pkg/semicolon.py", 3, "CRL101"),
        ("pkg/colon.py", 3, "CRL102"),
        ("pkg/continued.py", 4, "CRL101"),
        ("pkg/parenthesised.py", 5, "CRL101"),
        ("pkg/utf7.py", 4, "CRL101"),
    }
