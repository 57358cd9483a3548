"""Edits the language server sends: line edits that reproduce a fix exactly, and where a
suppression comment goes so that the file still parses and the suppression applies."""

from __future__ import annotations

import ast
import re

from corral.lint_rules.edits import Edit, line_edits, suppression_insertion
from hypothesis import given
from hypothesis import strategies as st
from linthelpers import check

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def apply(text: str, edits: list[Edit]) -> str:
    """Apply code-point edits, last first, as a client would (positions refer to ``text``)."""
    lines = _LINES.findall(text)

    def offset(at: tuple[int, int]) -> int:
        line, column = at
        return sum(len(x) for x in lines[:line]) + column

    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: offset(edit.start)] + edit.text + text[offset(edit.end) :]
    return text


line = st.text(alphabet="ab😋 #", max_size=6)
ending = st.sampled_from(["\n", "\r\n", "\r"])
document = st.lists(st.tuples(line, ending), max_size=8).map(
    lambda parts: "".join(a + b for a, b in parts)
) | st.tuples(st.lists(st.tuples(line, ending), max_size=6), line).map(
    lambda p: "".join(a + b for a, b in p[0]) + p[1]
)


@given(document, document)
def test_line_edits_turn_the_old_text_into_the_new_one_exactly(before: str, after: str) -> None:
    assert apply(before, line_edits(before, after)) == after


def test_line_edits_touch_only_the_changed_lines() -> None:
    before = "import asyncio\n\nasyncio.create_task(f())\nx = 1\n"
    after = "import corral\n\ncorral.spawn(f)\nx = 1\n"
    edits = line_edits(before, after)
    assert [(e.start, e.end) for e in edits] == [((0, 0), (1, 0)), ((2, 0), (3, 0))]
    assert line_edits(before, before) == []


def test_line_edits_at_the_end_of_a_file_without_a_final_newline() -> None:
    edits = line_edits("a\nb", "a\nc")
    assert edits == [Edit((1, 0), (1, 1), "c")]


SOURCE = """import asyncio


async def main() -> None:
    asyncio.create_task(main())  # first
    asyncio.create_task(
        main())
    x = "a" + \\
        str(asyncio.create_task(main()))
    y = asyncio.create_task(main()) \\
        .cancel()
"""


def insert(text: str, line: int) -> tuple[str, tuple[int, int]]:
    finding = next(f for f in check(text) if f.line == line)
    insertion = suppression_insertion(text, finding)
    edit = Edit(insertion.at, insertion.at, insertion.text)
    return apply(text, [edit]), insertion.cursor


def test_suppression_goes_after_the_code_with_the_cursor_in_the_reason() -> None:
    text, cursor = insert(SOURCE, 6)
    new_line = text.splitlines()[5]
    assert new_line == '    asyncio.create_task(  # corral: allow[CRL201] reason=""'
    assert cursor == (5, len(new_line) - 1)
    ast.parse(text)
    assert [f.code for f in check(text) if f.line == 6] == ["CRL902"]  # no reason yet


def test_suppression_goes_alone_above_a_line_that_has_a_comment() -> None:
    text, cursor = insert(SOURCE, 5)
    lines = text.splitlines()
    assert lines[4] == '    # corral: allow[CRL201] reason=""'
    assert lines[5] == "    asyncio.create_task(main())  # first"
    assert cursor == (4, len(lines[4]) - 1)
    written = text.replace('reason=""', 'reason="a test"')
    assert all(f.line != 6 for f in check(written))


def test_suppression_after_a_backslash_continuation_stays_on_the_line() -> None:
    text, _ = insert(SOURCE, 9)
    assert text.splitlines()[8].endswith(
        'str(asyncio.create_task(main()))  # corral: allow[CRL201] reason=""'
    )
    ast.parse(text)


def test_suppression_of_a_line_ending_in_a_backslash_goes_above() -> None:
    text, _ = insert(SOURCE, 10)
    lines = text.splitlines()
    assert lines[9] == '    # corral: allow[CRL201] reason=""'
    ast.parse(text)


def test_suppression_keeps_the_files_line_endings() -> None:
    source = SOURCE.replace("\n", "\r\n")
    text, _ = insert(source, 5)
    assert '# corral: allow[CRL201] reason=""\r\n' in text
    assert "\n" not in text.replace("\r\n", "")
