"""Output formats for people and machines; exit codes live in the CLI."""

from __future__ import annotations

from collections.abc import Callable

from .catalogue import Catalogue
from .findings import Finding, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["REPORTERS", "Reporter", "report_json", "report_text"]

Reporter = Callable[[list[Finding], Catalogue, "TextIO"], None]


def replacement_for(finding: Finding | str, catalogue: Catalogue) -> str:
    """What to use instead: for a dynamic lookup, the replacement of the rule it evades."""
    if isinstance(finding, str):
        rule = catalogue.get(finding)
    else:
        rule = catalogue.get(finding.evades) if finding.evades else None
        rule = rule or catalogue.get(finding.code)
    return rule.replacement if rule else ""


def report_text(findings: list[Finding], catalogue: Catalogue, out: TextIO) -> None:
    """ruff-like lines: ``path:line:col: CODE message (use: replacement)``."""
    for f in findings:
        hint = replacement_for(f, catalogue)
        suffix = f" (use: {hint})" if hint else ""
        line = f"{f.path}:{f.line}:{f.col}: {f.code} {f.message}{suffix}"
        out.write(printable(line) + "\n")
    if findings:
        files = len({f.path for f in findings})
        noun = "finding" if len(findings) == 1 else "findings"
        out.write(f"Found {len(findings)} {noun} in {files} file{'s' if files != 1 else ''}.\n")
    else:
        out.write("All checks passed.\n")


def report_json(findings: list[Finding], catalogue: Catalogue, out: TextIO) -> None:
    """``json.dump(rows, out, indent=2)``, byte for byte, written a finding at a time: no
    list of every row is built, and strings go through the C encoder."""
    if not findings:
        out.write("[]\n")
        return
    import json  # only for this format
    from json.encoder import encode_basestring_ascii as quote

    def encode(value: object) -> str:  # a value as json.dump(..., indent=2) writes it here
        if type(value) is str:
            return quote(value)
        if type(value) is int:
            return int.__repr__(value)
        return json.dumps(value, indent=2).replace("\n", "\n    ")

    out.write("[\n")
    last = len(findings) - 1
    for i, f in enumerate(findings):
        row = f.to_dict()
        rule = catalogue.get(f.code)
        row["rule"] = rule.name if rule else ""
        row["replacement"] = replacement_for(f, catalogue)
        fields = ",\n    ".join(f"{quote(key)}: {encode(value)}" for key, value in row.items())
        out.write(f"  {{\n    {fields}\n  }}{',' if i < last else ''}\n")
    out.write("]\n")


def _report_sarif(findings: list[Finding], catalogue: Catalogue, out: TextIO) -> None:
    from .sarif import report_sarif  # imported by the runs that write SARIF only

    report_sarif(findings, catalogue, out)


def _report_github(findings: list[Finding], catalogue: Catalogue, out: TextIO) -> None:
    from .sarif import report_github

    report_github(findings, catalogue, out)


REPORTERS: dict[str, Reporter] = {
    "text": report_text,
    "json": report_json,
    "sarif": _report_sarif,
    "github": _report_github,
}
