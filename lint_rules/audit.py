"""``corral audit``: where the concurrency policy stands, for a reviewer who does not read code.

One data model (``build_report``) rendered as Markdown (for people) or JSON (for tooling):
the catalogue version in force, what each enforced rule prevents with its CWE/OWASP
mapping, open findings by rule and by top-level package, baseline debt, every inline
exception with its stated reason and location, and the paths exempted by configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .baseline import Baseline, baseline_path, split
from .config import package_version
from .discovery import display_path, iter_python_files
from .findings import Finding, printable
from .fleet import FleetError, by_owner, merge_reports, render_fleet, render_owners
from .policy import policy_report, suppression_governance
from .project import Project
from .source import Unreadable, decode
from .suppressions import MARKERS, find_suppressions

__all__ = ["build_report", "render_markdown", "run_audit"]


def _package(relpath: str) -> str:
    """The top-level package (or module) a file belongs to: the unit a team owns."""
    if relpath.startswith("/") or relpath.startswith(".."):
        return "(outside the project)"
    first = relpath.split("/", 1)[0]
    if "/" not in relpath:
        return first[:-3] if first.endswith(".py") else first
    return first


def _suppressions(project: Project, paths: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in iter_python_files(paths, project.config):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if not any(marker.encode() in data for marker in MARKERS):
            continue
        text = decode(data)
        if isinstance(text, Unreadable):
            continue
        for sup in find_suppressions(text, project.rules.prefixes):
            rows.append(
                {
                    "path": display_path(path),
                    "line": sup.line,
                    "col": sup.col,
                    "kind": sup.kind,
                    "codes": list(sup.codes),
                    "reason": sup.reason,
                    **suppression_governance(sup, project.rules.today),
                }
            )
    return sorted(rows, key=lambda r: (r["path"], r["line"], r["col"]))


def build_report(
    project: Project,
    paths: list[Path],
    findings: list[Finding],
    baseline: Baseline,
) -> dict[str, Any]:
    """Everything the report says, as plain data (the JSON format is exactly this)."""
    result = split(baseline, findings, project, paths)
    new = Counter(f.code for f in result.new)
    debt = Counter(e.code for e in result.matched)
    # read from the findings' typed fields, never from message text
    evaded = Counter(f.evades for f in findings if f.evades)
    entries = baseline.by_code()
    packages: dict[str, Counter[str]] = {}
    new_ids = {id(f) for f in result.new}
    for finding in findings:
        package = _package(project.relative(Path(finding.path)))
        status = "new" if id(finding) in new_ids else "baselined"
        packages.setdefault(package, Counter())[status] += 1
    enabled = project.rules.enabled
    rules = [
        {
            "code": rule.code,
            "name": rule.name,
            "summary": rule.summary,
            "level": rule.level,
            "since": rule.since,
            "enforced": rule.code in enabled,
            "replacement": rule.replacement,
            "cwe": list(rule.cwe),
            "owasp": list(rule.owasp),
            "new_findings": new[rule.code],
            "baselined_findings": debt[rule.code],
            "baseline_entries": entries[rule.code],
            "evaded_dynamically": evaded[rule.code],
            "exempt_paths": sorted(
                glob
                for sel, globs in project.config.allow.items()
                if rule.code.startswith(sel)
                for glob in globs
            ),
        }
        for rule in project.catalogue
    ]
    suppressions = _suppressions(project, paths)
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "corral_version": package_version(),
        "project": {"name": project.config.root.name, "root": str(project.config.root)},
        "catalogue": {
            "version": project.catalogue.version,
            "pinned_to": project.config.rules_version,
            "strict": project.config.strict,
            "source": project.catalogue.source,
        },
        "scope": [p.as_posix() for p in paths],
        "summary": {
            "new_findings": len(result.new),
            "baselined_findings": len(result.matched),
            "stale_baseline_entries": len(result.stale),
            "suppressions": len(suppressions),
            "suppressions_without_reason": sum(1 for s in suppressions if not s["reason"]),
            "suppressions_expired": sum(1 for s in suppressions if s["status"] != "active"),
            "rules_enforced": sum(1 for r in rules if r["enforced"]),
            "rules_available": len(rules),
        },
        "rules": rules,
        "packages": {
            name: {"new": counts["new"], "baselined": counts["baselined"]}
            for name, counts in sorted(packages.items())
        },
        "suppressions": suppressions,
        "suppressions_by_owner": by_owner(suppressions),
        "policy": policy_report(project.config),
        "baseline": {
            "path": project.relative(baseline.path),
            "entries": len(baseline.entries),
            "by_rule": dict(sorted(entries.items())),
            "stale": len(result.stale),
        },
        "exemptions": {code: list(globs) for code, globs in sorted(project.config.allow.items())},
    }


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _cell(text: object) -> str:
    return printable(str(text)).replace("|", "\\|")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    cat = report["catalogue"]
    pin = f"pinned to {cat['pinned_to']}" if cat["pinned_to"] else "not pinned (latest rules)"
    gate = "FAILS" if s["new_findings"] else "passes"
    out = [
        "# Concurrency policy audit",
        "",
        f"Generated {report['generated']} by corral {report['corral_version']} "
        f"for: {', '.join(report['scope'])}.",
        "",
        "## Summary",
        "",
        f"- Policy: rule catalogue **{cat['version']}**, {pin}; "
        f"{s['rules_enforced']} of {s['rules_available']} rules enforced"
        f"{' (strict level on)' if cat['strict'] else ''}.",
        f"- The CI gate currently **{gate}**: {_n(s['new_findings'], 'new violation')}.",
        f"- Accepted legacy debt (baseline): {_n(s['baselined_findings'], 'finding')}; "
        f"{_n(s['stale_baseline_entries'], 'baseline entry', 'baseline entries')} already "
        "paid off (remove them with `corral baseline --prune`).",
        f"- Exceptions granted in code: {_n(s['suppressions'], 'suppression')} "
        f"({s['suppressions_without_reason']} without a stated reason).",
        "",
        *_render_packs(report.get("policy", {})),
        "## What is enforced, and why",
        "",
        "Each rule bans a way of starting work that nobody bounds, observes or shuts down. "
        "The CWE and OWASP columns map it to the weakness it prevents.",
        "",
    ]
    out += _table(
        ["Rule", "What it stops", "Use instead", "CWE", "OWASP", "Enforced"],
        [
            [
                f"{r['code']} {r['name']}",
                r["summary"],
                r["replacement"],
                ", ".join(r["cwe"]) or "-",
                ", ".join(r["owasp"]) or "-",
                "yes" if r["enforced"] else f"no ({r['level']} level)",
            ]
            for r in report["rules"]
        ],
    )
    out += ["", "## Findings by rule", ""]
    counted = [
        r
        for r in report["rules"]
        if r["new_findings"] or r["baselined_findings"] or r.get("evaded_dynamically")
    ]
    if counted:
        out += _table(
            ["Rule", "New (fail the gate)", "Accepted (baseline)", "Reached dynamically"],
            [
                [
                    f"{r['code']} {r['name']}",
                    r["new_findings"],
                    r["baselined_findings"],
                    r.get("evaded_dynamically", 0),
                ]
                for r in counted
            ],
        )
    else:
        out.append("No findings.")
    out += ["", "## Findings by top-level package", ""]
    if report["packages"]:
        out += _table(
            ["Package", "New", "Accepted (baseline)"],
            [[name, c["new"], c["baselined"]] for name, c in report["packages"].items()],
        )
    else:
        out.append("No findings.")
    out += ["", "## Exceptions granted in code", ""]
    if report["suppressions"]:
        out.append("Each line below switches a rule off at one place; the reason is the author's.")
        out.append("")
        out += _table(
            ["Where", "Rules", "Reason"],
            [
                [
                    f"{row['path']}:{row['line']}",
                    ", ".join(row["codes"]),
                    row["reason"] or "**no reason given**",
                ]
                for row in report["suppressions"]
            ],
        )
    else:
        out.append("None.")
    out += render_owners(report.get("suppressions_by_owner", []))
    out += ["", "## Exempted paths (configuration)", ""]
    if report["exemptions"]:
        out += _table(
            ["Rules", "Paths where they do not apply"],
            [[code, ", ".join(globs)] for code, globs in report["exemptions"].items()],
        )
    else:
        out.append("None.")
    base = report["baseline"]
    out += ["", "## Baseline debt", ""]
    if base["entries"]:
        out.append(f"`{base['path']}` holds {_n(base['entries'], 'accepted finding')}:")
        out.append("")
        out += _table(["Rule", "Entries"], [[c, n] for c, n in base["by_rule"].items()])
    else:
        out.append("No baseline: every finding counts.")
    return "\n".join(map(printable, out)) + "\n"


def _render_packs(policy: dict[str, Any]) -> list[str]:
    """Which shared policy the project extends, and the organisation rules it brings."""
    packs = policy.get("packs", [])
    organisation = policy.get("organisation_rules", [])
    if not packs and not organisation:
        return []
    out = ["## Policy packs", ""]
    for pack in packs:
        version = pack["version"] or "unversioned file"
        out.append(f"- `{pack['name']}` {version} (sha256 {pack['sha256']})")
    for org in organisation:
        out.append(
            f"- organisation rules {org['prefix']} {org['version']}: {', '.join(org['rules'])}"
        )
    if policy.get("no_suppress"):
        out.append(f"- Never suppressed inline: {', '.join(policy['no_suppress'])}")
    return [*out, ""]


def run_audit(args: argparse.Namespace) -> int:
    from .commandline import collect_findings, project_from_args

    if args.merge:
        return _merge(args)
    project = project_from_args(args)
    paths = [Path(p) for p in (args.paths or ["."])]
    findings, _ = collect_findings(project, paths, use_cache=not args.no_cache)
    baseline = Baseline.load(baseline_path(project, args.baseline))
    report = build_report(project, paths, findings, baseline)
    if args.output_format == "json":
        text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    else:
        text = render_markdown(report)
    return _write(args, text)


def _merge(args: argparse.Namespace) -> int:
    """``corral audit --merge a.json b.json ...``: the fleet report."""
    from .commandline import UsageError

    try:
        report = merge_reports(list(args.merge))
    except FleetError as exc:
        raise UsageError(str(exc)) from None
    if args.output_format == "json":
        return _write(args, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return _write(args, render_fleet(report))


def _write(args: argparse.Namespace, text: str) -> int:
    from .commandline import EXIT_CLEAN

    if args.output is not None:
        args.output.write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_CLEAN
