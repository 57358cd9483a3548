"""Print pip constraints that pin every runtime dependency to its declared floor.

CI installs the project with these constraints once and runs the tests there, so a floor in
pyproject.toml is a version the code was shown to work with, not a guess. A runtime
dependency without a ``>=`` floor is an error: it could not be tested at its minimum.

Usage: python .ci/floors.py [pyproject.toml] > floors.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<specs>[^;]*?)\s*(?:;\s*(?P<marker>.*))?$"
)
FLOOR = re.compile(r">=\s*(?P<version>[0-9][^,\s]*)")


def floors(pyproject: Path) -> list[str]:
    """One ``name==floor`` line per runtime dependency, keeping environment markers."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    lines = []
    problems = []
    for requirement in data["project"].get("dependencies", []):
        match = REQUIREMENT.match(requirement)
        if match is None:
            problems.append(f"cannot read requirement {requirement!r}")
            continue
        floor = FLOOR.search(match["specs"])
        if floor is None:
            problems.append(f"{match['name']} has no '>=' floor ({requirement!r})")
            continue
        marker = f"; {match['marker']}" if match["marker"] else ""
        lines.append(f"{match['name']}=={floor['version']}{marker}")
    if problems:
        for problem in problems:
            print(f"error: {pyproject}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return lines


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(floors(path)))
