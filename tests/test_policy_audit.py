"""Suppression governance in ``corral audit``, and the fleet report merged from three repos."""

from __future__ import annotations

import json
from pathlib import Path

from linthelpers import run_corral
from test_policy import ORG_RULES, write

SERVICE = """\
import asyncio
import sched
asyncio.create_task(a())  # corral: allow[CRL201] reason="drained in close()" until="2999-06-01" owner="team-payments"
asyncio.create_task(b())  # corral: allow[CRL201] reason="migration" until="2020-01-15" owner="team-search"
asyncio.create_task(c())  # corral: allow[CRL201] reason="startup probe" owner="team-payments"
asyncio.create_task(d())  # corral: allow[CRL201] reason="warm-up" until="2999-01-01" owner="team-search"
sched.scheduler()
"""  # noqa: E501


def test_audit_lists_suppressions_by_owner_soonest_expiry_first_and_names_packs(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        **{
            "org/policy.toml": 'rule-files = ["rules.yaml"]\nno-suppress = ["CRL301"]\n',
            "org/rules.yaml": ORG_RULES,
            "pyproject.toml": '[tool.corral]\nextends = "org/policy.toml"\n',
            "svc.py": SERVICE,
        },
    )
    result = run_corral("audit", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    order = [(r["owner"], r["until"], r["status"]) for r in report["suppressions_by_owner"]]
    assert order == [
        ("team-search", "2020-01-15", "expired"),
        ("team-search", "2999-01-01", "active"),
        ("team-payments", "2999-06-01", "active"),
        ("team-payments", "", "active"),
    ]
    assert report["summary"]["suppressions_expired"] == 1
    assert [p["name"] for p in report["policy"]["packs"]] == ["org/policy.toml"]
    assert report["policy"]["organisation_rules"][0]["rules"] == ["ORG101"]
    assert report["policy"]["no_suppress"] == ["CRL301"]
    org = next(r for r in report["rules"] if r["code"] == "ORG101")
    assert org["enforced"] and org["new_findings"] == 1
    markdown = run_corral("audit", cwd=tmp_path).stdout
    assert "## Policy packs" in markdown and "organisation rules ORG 2.3.0" in markdown
    section = markdown.split("## Suppressions by owner and expiry")[1]
    assert section.index("2020-01-15") < section.index("2999-01-01") < section.index("2999-06-01")
    assert "**expired**" in section


def _repo(root: Path, name: str, pyproject: str, **files: str) -> Path:
    repo = root / name
    write(repo, **{"pyproject.toml": pyproject, **files})
    return repo


def test_fleet_report_merges_three_repositories_sorted_by_debt(tmp_path: Path) -> None:
    payments = _repo(
        tmp_path,
        "payments",
        '[tool.corral]\nrules-version = "1.0"\n',
        **{
            "old.py": "import asyncio\n" + "asyncio.create_task(x())\n" * 3,
            "new.py": "import threading\nthreading.Thread(target=f).start()\n",
        },
    )
    assert run_corral("baseline", "old.py", cwd=payments).returncode == 0
    search = _repo(
        tmp_path,
        "search",
        "[tool.corral]\n",
        **{"svc.py": SERVICE.replace("import sched\n", "").replace("sched.scheduler()\n", "")},
    )
    clean = _repo(tmp_path, "docs-site", "[tool.corral]\n", **{"ok.py": "x = 1\n"})
    reports = []
    for repo in (clean, payments, search):
        out = tmp_path / f"{repo.name}.json"
        result = run_corral("audit", "--format", "json", "-o", str(out), cwd=repo)
        assert result.returncode == 0, result.stderr
        reports.append(str(out))

    merged = run_corral("audit", "--merge", *reports, "--format", "json", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    fleet = json.loads(merged.stdout)
    repos = fleet["repositories"]
    assert [r["name"] for r in repos] == ["payments", "search", "docs-site"]
    assert [(r["new_findings"], r["baselined_findings"]) for r in repos] == [(1, 3), (2, 0), (0, 0)]
    assert [r["pinned_to"] for r in repos] == ["1.0", None, None]
    assert repos[0]["findings_by_rule"] == {
        "CRL101": {"new": 1, "baselined": 0},
        "CRL201": {"new": 0, "baselined": 3},
    }
    assert fleet["rules"]["CRL201"] == {
        "name": "asyncio-create-task",
        "new": 1,
        "baselined": 3,
        "repositories": 2,
    }
    owners = {o["owner"]: o for o in fleet["owners"]}
    assert owners["team-search"]["expired"] == 1
    assert owners["team-search"]["next_expiry"] == "2020-01-15"
    assert owners["team-payments"]["suppressions"] == 2
    assert fleet["owners"][0]["owner"] == "team-search"  # expired exceptions come first
    assert fleet["totals"]["repositories"] == 3

    markdown = run_corral("audit", "--merge", *reports, cwd=tmp_path)
    assert markdown.returncode == 0
    text = markdown.stdout
    assert text.startswith("# Concurrency policy: fleet report")
    table = text.split("## Repositories by debt")[1]
    assert table.index("| payments |") < table.index("| search |") < table.index("| docs-site |")
    assert "| team-search | 2 | 1 | 2020-01-15 | search |" in text


def test_fleet_merge_refuses_a_file_that_is_not_an_audit(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"results": []}')
    (tmp_path / "y.json").write_text("not json")
    for name, needle in (("x.json", "not a `corral audit --format json` report"), ("y", "")):
        path = tmp_path / (name if name.endswith(".json") else "y.json")
        result = run_corral("audit", "--merge", str(path), cwd=tmp_path)
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1
        assert str(path) in result.stderr and needle in result.stderr
