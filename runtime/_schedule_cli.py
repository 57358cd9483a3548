"""``corral tasks schedule``: the periodic tasks a service declares, with their next fires.

Schedules live in code (``@corral.periodic``), not in the task database, so the command
imports the modules that declare them (``--import myservice.jobs``) and needs no --db.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from .schedule import registered

__all__ = ["show_schedule"]


def show_schedule(
    modules: Sequence[str], queue: str | None, as_json: bool, out: TextIO, err: TextIO
) -> int:
    """Print each declared periodic task and its next fire time; 2 when a module fails."""
    if not modules:
        err.write("corral tasks schedule: name the modules that declare them: --import MODULE\n")
        return 2
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory's packages
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # the user's module: report, never a traceback
            err.write(f"corral tasks schedule: cannot import {module!r}: {exc!r}\n")
            return 2
    now = datetime.now(UTC)
    rows = [(p, next(p.fires_after(now))) for p in registered(queue)]
    rows.sort(key=lambda row: row[1])
    if as_json:
        out.write(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "queue": p.queue,
                        "schedule": p.cron or f"every {p.every}",
                        "tz": str(p.tz),
                        "overlap": p.overlap,
                        "catch_up": p.catch_up,
                        "next": when.isoformat(),
                    }
                    for p, when in rows
                ],
                indent=2,
            )
            + "\n"
        )
        return 0
    if not rows:
        out.write("no periodic tasks declared\n")
        return 0
    header = ("NAME", "QUEUE", "SCHEDULE", "TZ", "OVERLAP", "CATCH_UP", "NEXT (UTC)")
    table = [
        (
            p.name,
            p.queue,
            p.cron or f"every {p.every}",
            str(p.tz),
            p.overlap,
            p.catch_up,
            when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        for p, when in rows
    ]
    widths = [max(len(c) for c in column) for column in zip(header, *table, strict=False)]
    for row in (header, *table):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0
