"""Machine outputs for code review: SARIF 2.1.0 (code scanning) and GitHub workflow annotations.

SARIF carries one ``rule`` per catalogue entry with its docs, replacement, CWE/OWASP tags and
a ``security-severity``, so a finding in a pull request explains itself. Results carry
``partialFingerprints`` built from the rule code, the normalised source line and its
occurrence (never the line number), so a finding does not become "new" when code above it
moves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from .baseline import SOURCE_LINES, key_findings
from .catalogue import Catalogue, Rule
from .config import package_version
from .findings import Finding, printable
from .reporters import replacement_for

__all__ = ["FINGERPRINT_KEY", "fingerprint", "report_github", "report_sarif", "sarif_log"]

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT_KEY = "corral/v1"
INFORMATION_URI = "https://pypi.org/project/corral/"


def fingerprint(code: str, line_text: str, occurrence: int) -> str:
    """Stable across line shifts: what was found, on which code, the how-manyth time."""
    payload = f"{code}\0{line_text}\0{occurrence}".encode()
    return hashlib.sha256(payload).hexdigest()[:32]


def security_severity(rule: Rule) -> str:
    """GitHub's 0-10 scale: evasion is high, raw concurrency medium, strict and meta rules low."""
    family = rule.code[:4]
    if family == "CRL3":
        return "7.5"
    if family == "CRL9":
        return "3.0"
    return "4.0" if rule.strict else "6.0"


def _level(rule: Rule) -> str:
    return "warning" if rule.strict or rule.code.startswith("CRL9") else "error"


def _tags(rule: Rule) -> list[str]:
    tags = ["security", "concurrency", *rule.cwe]
    tags += [f"external/cwe/{cwe.lower()}" for cwe in rule.cwe]
    tags += [f"OWASP {owasp}" for owasp in rule.owasp]
    return tags


def _help_markdown(rule: Rule) -> str:
    parts = [
        f"**{rule.summary}**",
        "",
        rule.rationale,
        "",
        f"**Use instead:** `{rule.replacement}`",
    ]
    refs = [*rule.cwe, *rule.owasp]
    if refs:
        parts += ["", "**References:** " + ", ".join(refs)]
    if rule.invalid:
        parts += [
            "",
            "**Example (flagged):**",
            "",
            "```python",
            rule.invalid[0].code.rstrip(),
            "```",
        ]
    if rule.valid:
        parts += [
            "",
            "**Example (accepted):**",
            "",
            "```python",
            rule.valid[0].code.rstrip(),
            "```",
        ]
    return "\n".join(parts)


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": "".join(part.capitalize() for part in rule.name.split("-")),
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.rationale},
        "help": {
            "text": f"{rule.summary}. Use instead: {rule.replacement}",
            "markdown": _help_markdown(rule),
        },
        "defaultConfiguration": {"level": _level(rule)},
        "properties": {
            "tags": _tags(rule),
            "security-severity": security_severity(rule),
            "precision": "high",
            "problem.severity": "warning" if _level(rule) == "warning" else "error",
        },
    }


def _artifact(path: str) -> dict[str, str]:
    posix = path.replace("\\", "/")
    if Path(path).is_absolute():
        return {"uri": Path(path).as_uri()}
    return {"uri": quote(posix), "uriBaseId": "%SRCROOT%"}


def _region(finding: Finding) -> dict[str, int]:
    region = {"startLine": max(finding.line, 1), "startColumn": max(finding.col, 1)}
    if finding.end_line >= finding.line and finding.end_line:
        region["endLine"] = finding.end_line
        end_col = finding.end_col if finding.end_col else finding.col
        if finding.end_line > finding.line or end_col >= region["startColumn"]:
            region["endColumn"] = max(end_col, 1)
    return region


def sarif_log(findings: Iterable[Finding], catalogue: Catalogue) -> dict[str, Any]:
    """The whole SARIF log as a dict (one run, every catalogue rule described)."""
    rules = list(catalogue)
    index = {rule.code: i for i, rule in enumerate(rules)}
    results = []
    for entry, finding in key_findings(findings, SOURCE_LINES):
        rule = catalogue.get(finding.code)
        replacement = replacement_for(finding, catalogue)
        hint = f" (use: {replacement})" if replacement else ""
        result: dict[str, Any] = {
            "ruleId": finding.code,
            "level": _level(rule) if rule else "error",
            "message": {"text": f"{finding.message}{hint}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _artifact(finding.path),
                        "region": _region(finding),
                    }
                }
            ],
            "partialFingerprints": {
                FINGERPRINT_KEY: fingerprint(entry.code, entry.line, entry.occurrence)
            },
        }
        if finding.code in index:
            result["ruleIndex"] = index[finding.code]
        facts = {"qualname": finding.qualname, "kind": finding.kind, "evades": finding.evades}
        if any(facts.values()):
            result["properties"] = {k: v for k, v in facts.items() if v}
        results.append(result)
    version = package_version()
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "corral",
                        "version": version,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule_descriptor(rule) for rule in rules],
                        "properties": {"catalogueVersion": catalogue.version},
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def report_sarif(findings: list[Finding], catalogue: Catalogue, out: TextIO) -> None:
    # compact: json's C encoder only serves unindented output, and SARIF is for machines
    out.write(json.dumps(sarif_log(findings, catalogue), separators=(",", ":")))
    out.write("\n")


def _escape_data(text: str) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return printable(text)  # no terminal escapes in the job log either


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def report_github(findings: list[Finding], catalogue: Catalogue, out: TextIO) -> None:
    """``::error file=...,line=...::message`` lines GitHub Actions turns into PR annotations."""
    for f in findings:
        rule = catalogue.get(f.code)
        level = "warning" if rule is not None and _level(rule) == "warning" else "error"
        replacement = replacement_for(f, catalogue)
        hint = f" (use: {replacement})" if replacement else ""
        title = f"{f.code} {rule.name}" if rule else f.code
        props = [f"file={_escape_property(f.path)}", f"line={f.line}", f"col={f.col}"]
        if f.end_line:
            props.append(f"endLine={f.end_line}")
            if f.end_line == f.line and f.end_col:
                props.append(f"endColumn={f.end_col}")
        props.append(f"title={_escape_property(title)}")
        out.write(f"::{level} {','.join(props)}::{_escape_data(f.message + hint)}\n")
