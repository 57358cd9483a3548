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
