"""``corral audit --guard-report PATH``: what the run-time guard saw, beside what the linter sees.

The pytest plugin (``pytest --corral-guard=report``) writes a JSON report of the raw spawns
it counted while the test suite ran. The linter reads source; this is the other half of the
evidence: spawns from libraries and from code the linter cannot resolve. Reading it needs
only ``json`` (the report format is plain data), so the linter never imports the runtime.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "load_guard_report", "render_guard_section"]

FORMAT = "corral-guard-report"
_TOP_SITES = 20
_ROW_FIELDS = {"kind": str, "package": str, "site": str, "count": int}


def load_guard_report(path: Path) -> dict[str, Any]:
    """The audit's ``runtime`` section from a guard report file; a clear ``UsageError``
    naming the file and the problem when it is missing or not a guard report."""
    from .commandline import UsageError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--guard-report {path}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--guard-report {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(
            f'--guard-report {path}: not a corral guard report (expected "format": '
            f'"{FORMAT}", written by pytest --corral-guard=report)'
        )
    rows = data.get("spawns")
    if not isinstance(rows, list):
        raise UsageError(f"--guard-report {path}: 'spawns' must be a list")
    spawns: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or any(
            not isinstance(row.get(k), t) for k, t in _ROW_FIELDS.items()
        ):
            raise UsageError(
                f"--guard-report {path}: spawns[{index}] needs kind, package, site (text) "
                "and count (integer)"
            )
        spawns.append(
            {
                "kind": row["kind"],
                "package": row["package"],
                "site": row["site"],
                "caller": row.get("caller") if isinstance(row.get("caller"), str) else None,
                "count": row["count"],
                "third_party": bool(row.get("third_party")),
            }
        )
    spawns.sort(key=lambda r: (-r["count"], r["package"], r["site"]))
    by_package: Counter[str] = Counter()
    for row in spawns:
        by_package[row["package"]] += row["count"]
    leaks = data.get("leaks")
    violations = data.get("violations")
    return {
        "source": path.as_posix(),
        "generated": data.get("generated"),
        "tests": data.get("tests") if isinstance(data.get("tests"), int) else None,
        "raw_spawns": sum(by_package.values()),
        "sites": len(spawns),
        "by_package": dict(sorted(by_package.items(), key=lambda kv: (-kv[1], kv[0]))),
        "spawns": spawns,
        "violations": len(violations) if isinstance(violations, list) else 0,
        "leaks": len(leaks) if isinstance(leaks, list) else 0,
    }


def render_guard_section(runtime: dict[str, Any]) -> list[str]:
    """Markdown lines for the audit's "Seen at run time" section."""
    from .audit import _table as table

    tests = f" over {runtime['tests']} tests" if runtime["tests"] is not None else ""
    out = [
        "## Raw concurrency seen at run time",
        "",
        f"From the guard report `{runtime['source']}`{tests}: "
        f"{runtime['raw_spawns']} raw spawn(s) at {runtime['sites']} call site(s), "
        f"{runtime['violations']} refused in the project's own code, "
        f"{runtime['leaks']} leak(s) of tasks, threads or queues.",
        "",
    ]
    if not runtime["spawns"]:
        return [*out, "No raw spawns."]
    out += table(["Package", "Raw spawns"], [[p, n] for p, n in runtime["by_package"].items()])
    out += ["", "Busiest call sites:", ""]
    out += table(
        ["Package", "Kind", "Site", "Called from", "Count"],
        [
            [r["package"], r["kind"], r["site"], r["caller"] or "-", r["count"]]
            for r in runtime["spawns"][:_TOP_SITES]
        ],
    )
    return out
