"""The shipped Grafana dashboard and Prometheus alert rules are well formed and documented.

The rules are checked and unit-tested with the real ``promtool``; the dashboard's PromQL
is checked by the same parser by wrapping each panel expression in a recording rule.
Whether the metrics they reference really exist is tested against the live runtime in
``test_observability_metrics.py``; the helpers that pull metric names out of the
artifacts live here so both files read the artifacts the same way.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "corral-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "corral-alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "corral-alerts.test.yml"
README = ROOT / "README.md"
RUNBOOK = ROOT / "deploy" / "prometheus" / "RUNBOOK.md"

METRIC_NAME = re.compile(r"\bcorral_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
REQUIRED_ALERTS = {
    "QueueSaturated",
    "QueueRejecting",
    "TaskFailureRateHigh",
    "BacklogHigh",
    "DeadLettersGrowing",
    "QueueStalled",
    "RawConcurrencyDetected",
}


# -- reading the artifacts (shared with test_observability_metrics.py) -------------------
def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def load_alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws data, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, expr) for every query of every panel."""
    return [
        (f"panel {panel['title']!r} query {target['refId']}", target["expr"])
        for panel in dashboard_panels(load_dashboard())
        for target in panel["targets"]
    ]


def alert_expressions() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in load_alert_rules()]


def referenced_samples(expr: str) -> set[str]:
    """Sample names an expression reads, e.g. ``corral_task_wait_seconds_bucket``."""
    return set(METRIC_NAME.findall(expr))


def family_name(sample: str) -> str:
    """The metric family a sample belongs to: histogram samples drop their suffix."""
    for suffix in HISTOGRAM_SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not found: install the Debian 'prometheus' package "
            "(.ci/run does this when it runs as root)"
        )
    return path


# -- the alert rules ----------------------------------------------------------------------
def test_promtool_check_rules_accepts_the_alerts() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERT_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_promtool_unit_test() -> None:
    doc = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    tested: dict[str, list[dict[str, Any]]] = {}
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            tested.setdefault(check["alertname"], []).append(check)
    assert set(tested) == REQUIRED_ALERTS
    for name, checks in tested.items():
        assert any(c.get("exp_alerts") for c in checks), f"{name}: no case where it fires"


def test_alerts_are_the_documented_set_with_annotations() -> None:
    rules = load_alert_rules()
    assert {rule["alert"] for rule in rules} == REQUIRED_ALERTS
    for rule in rules:
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert annotations["description"].strip(), rule["alert"]
        assert annotations["runbook_url"] == (
            f"deploy/prometheus/RUNBOOK.md#{rule['alert'].lower()}"
        )
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_alert_thresholds_match_the_operating_guide() -> None:
    exprs = {rule["alert"]: rule for rule in load_alert_rules()}
    assert "> 0.01" in exprs["TaskFailureRateHigh"]["expr"]
    assert "[5m]" in exprs["TaskFailureRateHigh"]["expr"]
    # backlog as drain time, durable queues through corral_store_pending
    assert "(corral_store_pending or corral_queue_depth)" in exprs["BacklogHigh"]["expr"]
    assert ") > 600" in exprs["BacklogHigh"]["expr"]
    assert exprs["BacklogHigh"]["for"] == "10m"
    assert "corral_store_pending" in exprs["QueueStalled"]["expr"]
    assert exprs["QueueSaturated"]["for"] == "3m"
    assert "[2m]" in exprs["QueueRejecting"]["expr"] and exprs["QueueRejecting"]["for"] == "1m"
    assert "[5m]" in exprs["QueueStalled"]["expr"]


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_link_lands_on_a_runbook_heading_with_a_remedy() -> None:
    """The runbook lies next to the rules; each entry says what to do, and for which queues."""
    runbook = RUNBOOK.read_text(encoding="utf-8")
    headings = {
        github_anchor(m.group(1)): m.start() for m in re.finditer(r"^## (.+)$", runbook, re.M)
    }
    for rule in load_alert_rules():
        path, anchor = rule["annotations"]["runbook_url"].split("#", 1)
        assert (ROOT / path).resolve() == RUNBOOK.resolve()
        assert anchor in headings, f"runbook link of {rule['alert']} has no runbook heading"
        body = re.split(r"\n## ", runbook[headings[anchor] :], maxsplit=1)[0]
        assert "What to do" in body, f"runbook of {rule['alert']} does not say what to do"
    for alert in ("QueueSaturated", "QueueRejecting", "BacklogHigh", "QueueStalled"):
        body = re.split(r"\n## ", runbook[headings[alert.lower()] :], maxsplit=1)[0]
        assert "durable" in body, f"runbook of {alert} does not cover durable queues"
    assert "deploy/prometheus/RUNBOOK.md" in readme_section("Operating corral")


def test_operating_guide_explains_every_metric_the_artifacts_use() -> None:
    section = readme_section("Operating corral")
    used = {
        family_name(sample)
        for _, expr in dashboard_expressions() + alert_expressions()
        for sample in referenced_samples(expr)
    }
    missing = sorted(name for name in used if f"`{name}`" not in section)
    assert not missing, f"README 'Operating corral' does not explain {missing}"


# -- the dashboard ------------------------------------------------------------------------
def test_dashboard_has_queue_and_group_variables() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, metric in (
        ("queue", "corral_queue_depth"),
        ("group", "corral_group_inflight"),
        ("package", "corral_raw_spawns_total"),
    ):
        var = variables[name]
        assert var["type"] == "query"
        assert var["query"]["query"] == f"label_values({metric}, {name})"
        assert var["includeAll"] and var["multi"]


def test_dashboard_layout_is_importable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another"
                cells.add((x, y))
    for panel in dashboard_panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel.get("description"), f"panel {panel['title']!r} has no description"


def test_dashboard_queries_follow_the_template_variables() -> None:
    for where, expr in dashboard_expressions():
        for selector in re.findall(r"(corral_[a-z_]+)(\{[^}]*\})?", expr):
            name, labels = selector
            wanted = (
                'group=~"$group"'
                if name.startswith("corral_group")
                else 'package=~"$package"'
                if name.startswith("corral_raw_spawns")
                else 'queue=~"$queue"'
            )
            assert wanted in labels, f"{where}: {name} is not filtered by {wanted}"


def test_dashboard_covers_the_operating_signals() -> None:
    exprs = " ".join(expr for _, expr in dashboard_expressions())
    panels = {
        p["title"]: " ".join(t["expr"] for t in p["targets"])
        for p in dashboard_panels(load_dashboard())
    }

    def panel_with(*needles: str) -> str:
        for title, text in panels.items():
            if all(n in text for n in needles):
                return title
        raise AssertionError(f"no panel shows {needles}")

    panel_with("corral_queue_depth", "corral_queue_capacity")
    panel_with("corral_queue_busy_workers", "/", "corral_queue_workers")
    panel_with("corral_tasks_submitted_total", "corral_tasks_completed_total")
    panel_with("corral_tasks_rejected_total")
    panel_with('outcome="error"', "/")
    panel_with("corral_task_retries_total")
    panel_with("corral_store_dead_letters")
    panel_with("corral_group_inflight")
    panel_with("corral_raw_spawns_total", "by (package")
    for histogram in (
        "corral_task_duration_seconds",
        "corral_task_wait_seconds",
        "corral_store_commit_seconds",
    ):
        for q in ("0.5", "0.95", "0.99"):
            assert f"histogram_quantile({q}, sum by (queue, le) (rate({histogram}_bucket" in exprs


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Grafana variables are substituted as Grafana would, then promtool parses each query."""
    rules = []
    for i, (_, expr) in enumerate(dashboard_expressions()):
        concrete = (
            expr.replace("$__rate_interval", "1m")
            .replace("$queue", ".*")
            .replace("$group", ".*")
            .replace("$package", ".*")
        )
        assert "$" not in concrete, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"corral_dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_metric_name_extraction_strips_only_histogram_suffixes() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le) (rate(corral_task_wait_seconds_bucket[5m])))"
        " / rate(corral_tasks_completed_total[5m]) + corral_store_commit_seconds_count"
    )
    samples = referenced_samples(expr)
    assert samples == {
        "corral_task_wait_seconds_bucket",
        "corral_tasks_completed_total",
        "corral_store_commit_seconds_count",
    }
    assert {family_name(s) for s in samples} == {
        "corral_task_wait_seconds",
        "corral_tasks_completed_total",
        "corral_store_commit_seconds",
    }
