"""The fleet report: many repositories' ``corral audit --format json`` in one burn-down view.

A platform team collects each repository's audit (a CI artefact) and merges them: per
repository the open findings, the baseline debt, the suppressions and the catalogue version it
pins, sorted by debt; per owner the suppressions they answer for and when the first expires;
per rule the findings across the fleet. The input is the audit's JSON and nothing else, so the
merge never needs the repositories themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["FleetError", "by_owner", "merge_reports", "render_fleet", "render_owners"]

NO_OWNER = "(no owner)"
NO_EXPIRY = "9999-12-31"  # sorts after every real date


class FleetError(Exception):
    """An input file is not an audit report; the message names the file and the problem."""


def by_owner(suppressions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Suppressions ordered soonest expiry first (expired ones first of all), then owner."""
    rows = [
        {
            "owner": row.get("owner") or NO_OWNER,
            "until": row.get("until", ""),
            "status": row.get("status", "active"),
            "path": row["path"],
            "line": row["line"],
            "codes": row["codes"],
            "reason": row["reason"],
        }
        for row in suppressions
    ]
    return sorted(rows, key=_expiry_key)


def _expiry_key(row: dict[str, Any]) -> tuple[int, str, str, str, int]:
    lapsed = 0 if row["status"] != "active" else 1
    return (lapsed, row["until"] or NO_EXPIRY, row["owner"], row["path"], row["line"])


def render_owners(rows: list[dict[str, Any]]) -> list[str]:
    """The audit's Markdown section: who owns which exception, and until when."""
    from .audit import _table

    out = ["", "## Suppressions by owner and expiry", ""]
    if not rows:
        return [*out, "None."]
    out.append("Soonest expiry first; an expired suppression no longer suppresses (CRL905).")
    out.append("")
    out += _table(
        ["Owner", "Until", "Status", "Where", "Rules", "Reason"],
        [
            [
                r["owner"],
                r["until"] or "no end date",
                f"**{r['status']}**" if r["status"] != "active" else "active",
                f"{r['path']}:{r['line']}",
                ", ".join(r["codes"]),
                r["reason"] or "**no reason given**",
            ]
            for r in rows
        ],
    )
    return out


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise FleetError(f"{path}: not JSON: {exc}") from None
    missing = [k for k in ("summary", "rules", "catalogue", "suppressions") if k not in data]
    if not isinstance(data, dict) or missing:
        raise FleetError(f"{path}: not a `corral audit --format json` report (no {missing[0]})")
    return data


def merge_reports(paths: list[Path]) -> dict[str, Any]:
    """One fleet report (plain data; the JSON format is exactly this)."""
    repos: list[dict[str, Any]] = []
    owners: dict[str, dict[str, Any]] = {}
    rules: dict[str, dict[str, Any]] = {}
    names: Counter[str] = Counter()
    for path in paths:
        report = _load(path)
        name = str(report.get("project", {}).get("name") or path.stem)
        names[name] += 1
        if names[name] > 1:
            name = f"{name} ({path})"
        summary = report["summary"]
        by_rule = {
            r["code"]: {"new": r["new_findings"], "baselined": r["baselined_findings"]}
            for r in report["rules"]
            if r["new_findings"] or r["baselined_findings"]
        }
        sups = by_owner(report["suppressions"])
        policy = report.get("policy", {})
        repos.append(
            {
                "name": name,
                "report": str(path),
                "catalogue_version": report["catalogue"]["version"],
                "pinned_to": report["catalogue"]["pinned_to"],
                "packs": [f"{p['name']} {p['version']}".strip() for p in policy.get("packs", [])],
                "new_findings": summary["new_findings"],
                "baselined_findings": summary["baselined_findings"],
                "debt": summary["new_findings"] + summary["baselined_findings"],
                "suppressions": len(sups),
                "expired_suppressions": sum(1 for s in sups if s["status"] != "active"),
                "findings_by_rule": by_rule,
            }
        )
        for rule in report["rules"]:
            entry = rules.setdefault(
                rule["code"],
                {"name": rule["name"], "new": 0, "baselined": 0, "repositories": 0},
            )
            entry["new"] += rule["new_findings"]
            entry["baselined"] += rule["baselined_findings"]
            entry["repositories"] += 1 if rule["new_findings"] or rule["baselined_findings"] else 0
        for sup in sups:
            owner = owners.setdefault(
                sup["owner"],
                {"owner": sup["owner"], "suppressions": 0, "expired": 0, "next_expiry": ""},
            )
            owner["suppressions"] += 1
            owner["expired"] += sup["status"] != "active"
            owner.setdefault("repositories", set()).add(name)
            if sup["until"] and (not owner["next_expiry"] or sup["until"] < owner["next_expiry"]):
                owner["next_expiry"] = sup["until"]
    repos.sort(key=lambda r: (-r["debt"], -r["suppressions"], r["name"]))
    owner_rows = [
        {**o, "repositories": sorted(o["repositories"])}
        for o in sorted(
            owners.values(),
            key=lambda o: (-o["expired"], o["next_expiry"] or NO_EXPIRY, o["owner"]),
        )
    ]
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "totals": {
            "repositories": len(repos),
            "new_findings": sum(r["new_findings"] for r in repos),
            "baselined_findings": sum(r["baselined_findings"] for r in repos),
            "suppressions": sum(r["suppressions"] for r in repos),
            "expired_suppressions": sum(r["expired_suppressions"] for r in repos),
        },
        "repositories": repos,
        "owners": owner_rows,
        "rules": {
            code: entry
            for code, entry in sorted(rules.items())
            if entry["new"] or entry["baselined"]
        },
    }


def render_fleet(report: dict[str, Any]) -> str:
    """The fleet report in Markdown: the burn-down a platform team reads."""
    from .audit import _table

    t = report["totals"]
    out = [
        "# Concurrency policy: fleet report",
        "",
        f"Generated {report['generated']} from {t['repositories']} repositories: "
        f"{t['new_findings']} open findings, {t['baselined_findings']} in baselines, "
        f"{t['suppressions']} suppressions ({t['expired_suppressions']} expired).",
        "",
        "## Repositories by debt",
        "",
    ]
    out += _table(
        [
            "Repository",
            "Debt",
            "New",
            "Baselined",
            "Suppressions",
            "Expired",
            "Catalogue",
            "Pinned",
            "Packs",
        ],
        [
            [
                r["name"],
                r["debt"],
                r["new_findings"],
                r["baselined_findings"],
                r["suppressions"],
                r["expired_suppressions"],
                r["catalogue_version"],
                r["pinned_to"] or "latest",
                ", ".join(r["packs"]) or "-",
            ]
            for r in report["repositories"]
        ],
    )
    out += ["", "## Findings by rule", ""]
    if report["rules"]:
        repo_names = [r["name"] for r in report["repositories"]]
        out += _table(
            ["Rule", "New", "Baselined", *repo_names],
            [
                [
                    f"{code} {entry['name']}",
                    entry["new"],
                    entry["baselined"],
                    *(
                        sum(r["findings_by_rule"].get(code, {}).values())
                        for r in report["repositories"]
                    ),
                ]
                for code, entry in report["rules"].items()
            ],
        )
    else:
        out.append("No findings.")
    out += ["", "## Suppressions by owner", ""]
    if report["owners"]:
        out += _table(
            ["Owner", "Suppressions", "Expired", "Next expiry", "Repositories"],
            [
                [
                    o["owner"],
                    o["suppressions"],
                    o["expired"],
                    o["next_expiry"] or "no end date",
                    ", ".join(o["repositories"]),
                ]
                for o in report["owners"]
            ],
        )
    else:
        out.append("None.")
    return "\n".join(out) + "\n"
