"""The catalogue's examples are its test suite; the meta-tests keep every rule documented."""

from __future__ import annotations

import pytest
from corral.lint_rules.catalogue import CatalogueError, Example, load_catalogue, parse_catalogue
from corral.lint_rules.rule_tests import check_example

CATALOGUE = load_catalogue()
META = {"CRL901", "CRL902", "CRL903", "CRL904", "CRL905"}


def _cases(kind: str) -> list[object]:
    cases = []
    for rule in CATALOGUE:
        for i, example in enumerate(getattr(rule, kind)):
            cases.append(pytest.param(rule, example, id=f"{rule.code}-{kind}-{i}"))
    return cases


@pytest.mark.parametrize(("rule", "example"), _cases("invalid"))
def test_invalid_example_produces_exactly_the_declared_findings(rule, example):  # type: ignore[no-untyped-def]
    failure = check_example(CATALOGUE, rule, "invalid", rule.invalid.index(example), example)
    assert failure is None, failure.render()
    assert example.expect


@pytest.mark.parametrize(("rule", "example"), _cases("valid"))
def test_valid_example_produces_no_findings(rule, example):  # type: ignore[no-untyped-def]
    failure = check_example(CATALOGUE, rule, "valid", rule.valid.index(example), example)
    assert failure is None, failure.render()


def test_a_disagreeing_example_is_reported_with_a_diff() -> None:
    rule = CATALOGUE.get("CRL201")
    assert rule is not None
    wrong = Example(rule.invalid[0].code, ((9, 9, "CRL201"),))
    failure = check_example(CATALOGUE, rule, "invalid", 0, wrong)
    assert failure is not None
    text = failure.render()
    assert "-9:9 CRL201" in text and "+" in text and "findings differ" in text


@pytest.mark.parametrize("rule", list(CATALOGUE), ids=lambda r: r.code)
def test_every_rule_is_documented_and_exercised(rule):  # type: ignore[no-untyped-def]
    assert rule.summary and rule.rationale and rule.replacement
    assert len(rule.invalid) >= 3, "at least three invalid examples"
    assert len(rule.valid) >= 3, "at least three valid examples"
    if rule.code not in META:
        assert rule.cwe, "a policy rule maps to at least one CWE"
        assert rule.owasp, "a policy rule maps to at least one OWASP category"
        assert "corral" in rule.replacement, "the replacement names the governed API"
        assert rule.targets or rule.calls or rule.also or rule.methods


def test_catalogue_version_and_codes_are_well_formed():
    assert CATALOGUE.version == "1.2.1"
    assert all(code.startswith("CRL") for code in CATALOGUE.rules)


BASE = """
version: "1.0.0"
rules:
  - code: CRL101
    name: raw-thread
    since: "1.0.0"
    level: default
    summary: s
    replacement: corral.sync.spawn
    rationale: r
    examples: {invalid: [], valid: []}
"""


def test_minimal_catalogue_parses():
    assert list(parse_catalogue(BASE).rules) == ["CRL101"]


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t + t[t.index("  - code") :], "duplicate rule code CRL101"),
        (lambda t: t.replace("    level: default", "    levle: default"), "unknown field 'levle'"),
        (lambda t: t.replace('version: "1.0.0"', 'version: "one"'), "version 'one'"),
        (lambda t: t.replace('since: "1.0.0"', 'since: "2.0.0"'), "newer than catalogue"),
        (lambda t: t.replace("level: default", "level: loud"), "level 'loud'"),
        (lambda t: t.replace("code: CRL101", "code: X1"), "not of the form CRLnnn"),
        (lambda t: t.replace("    summary: s\n", ""), "missing required field 'summary'"),
        (lambda t: t + "extra: 1\n", "unknown top-level field 'extra'"),
        (lambda t: t.replace("rules:", "rules: ["), "not valid YAML"),
        (
            lambda t: (
                t.replace("    summary: s\n", "    summary: s\n    targets: [threading.Thread]\n")
                + t[t.index("  - code") :]
                .replace("CRL101", "CRL102")
                .replace("summary: s\n", "summary: s\n    calls: [threading.Thread]\n")
            ),
            "'threading.Thread' is already listed by CRL101",
        ),
        (
            lambda t: (
                t.replace("    summary: s\n", "    summary: s\n    methods: [create_task]\n")
                + t[t.index("  - code") :]
                .replace("CRL101", "CRL102")
                .replace("summary: s\n", "summary: s\n    methods: [create_task]\n")
            ),
            "'method create_task' is already listed by CRL101",
        ),
        (
            lambda t: t.replace("invalid: []", "invalid: [{code: x, expect: ['1 CRL101']}]"),
            "is not 'LINE:COL CODE'",
        ),
    ],
)
def test_broken_catalogue_is_rejected_with_where_and_what(mutation, message):  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogueError, match=message.replace("(", r"\(")) as info:
        parse_catalogue(mutation(BASE), "custom.yaml")
    assert str(info.value).startswith("custom.yaml")


def test_readme_rule_table_lists_every_rule() -> None:
    from linthelpers import ROOT

    readme = (ROOT / "README.md").read_text()
    for rule in CATALOGUE:
        assert f"| {rule.code} | {rule.name} | {rule.level} |" in readme, rule.code
