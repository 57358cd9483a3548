"""Annotated fixtures for the hard resolution cases: aliases, shadowing, receivers, structure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from linthelpers import check

FIXTURES = Path(__file__).parent / "fixtures" / "resolution"
EXPECT = re.compile(r"#\s*error:\s*(CRL\d{3}(?:\s*,\s*CRL\d{3})*)")


def _expected(text: str) -> dict[int, set[str]]:
    expected: dict[int, set[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = EXPECT.search(line)
        if m:
            expected[number] = {c.strip() for c in m.group(1).split(",")}
    return expected


@pytest.mark.parametrize(
    "fixture", sorted(FIXTURES.glob("*.py.txt")), ids=lambda p: p.name.split(".")[0]
)
def test_annotated_fixture(fixture: Path) -> None:
    text = fixture.read_text()
    found: dict[int, set[str]] = {}
    strict_rules = "# fixture: default-level rules" not in text
    for finding in check(text, strict_rules=strict_rules):
        found.setdefault(finding.line, set()).add(finding.code)
    assert found == _expected(text)


def test_same_location_is_never_reported_twice() -> None:
    findings = check("import asyncio\nasyncio.create_task(asyncio.create_task(x()))\n")
    locations = [(f.line, f.col) for f in findings]
    assert len(locations) == len(set(locations)) == 2


def test_columns_count_characters_not_bytes() -> None:
    (finding,) = check('import asyncio\nnamé = "é"; asyncio.create_task(job())\n')
    assert (finding.line, finding.col) == (2, 13)


def test_message_names_the_api_and_reporters_get_the_replacement() -> None:
    (finding,) = check("import asyncio\nasyncio.ensure_future(job())\n")
    assert "asyncio.ensure_future" in finding.message
    assert finding.code == "CRL202"


def test_strict_rules_are_off_unless_enabled() -> None:
    source = (
        "import asyncio\nasync def f():\n    async with asyncio.TaskGroup() as tg:\n        pass\n"
    )
    assert [f.code for f in check(source, strict_rules=True)] == ["CRL204"]
    assert check(source, strict_rules=False) == []


def test_noqa_needs_a_reason_only_in_strict_mode() -> None:
    source = "import asyncio\nasyncio.create_task(job())  # noqa: CRL201\n"
    assert check(source) == []
    assert [f.code for f in check(source, strict=True)] == ["CRL902"]
    with_reason = source.replace("CRL201", 'CRL201 reason="owned elsewhere"')
    assert check(with_reason, strict=True) == []


def test_suppression_of_unknown_code_suggests_the_closest() -> None:
    (finding,) = check("x = 1  # corral: allow[CRL210] reason='typo'\n")
    assert finding.code == "CRL903"
    assert "did you mean" in finding.message


def test_suppression_on_the_line_above_covers_only_the_next_line() -> None:
    source = (
        "import asyncio\n"
        "# corral: allow[CRL201] reason='kept and awaited in close()'\n"
        "asyncio.create_task(a())\n"
        "asyncio.create_task(b())\n"
    )
    assert [(f.line, f.code) for f in check(source)] == [(4, "CRL201")]


def test_form_feeds_do_not_shift_lines() -> None:
    """Only \\n, \\r\\n and \\r end lines for ast; a form feed must not shift the column map."""
    (finding,) = check("import asyncio\n\x0cnamé = 'é'; asyncio.create_task(job())\n")
    assert (finding.line, finding.col) == (2, 14)
    assert finding.source.endswith("asyncio.create_task(job())")


def test_dynamic_lookup_through_a_module_imported_inside_the_function() -> None:
    """The per-function skip must see `getattr(th, ...)` when `th` is imported in the function
    (no module-level binding of threading to go by)."""
    source = (
        "import asyncio\n"
        "asyncio.ensure_future(job())\n\n"
        "def f():\n"
        "    import threading as th\n"
        '    return getattr(th, "Ti" + "mer")\n'
    )
    assert [(f.line, f.code) for f in check(source)] == [(2, "CRL202"), (6, "CRL301")]
