"""Text edits for the editor: a rewritten file as line edits, and where a suppression goes.

Positions are 0-based lines and code-point columns, with lines ended by \\n, \\r\\n or \\r as
both the tokenizer and the Language Server Protocol count them; the server converts columns
to the client's position encoding.
"""

from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import dataclass

from .findings import Finding
from .source import split_lines

__all__ = ["Edit", "Insertion", "line_edits", "suppression_insertion"]

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


@dataclass(frozen=True)
class Edit:
    """Replace ``[start, end)`` with ``text``; positions are (line, column) pairs."""

    start: tuple[int, int]
    end: tuple[int, int]
    text: str


def _lines(text: str) -> list[str]:
    return _LINE.findall(text)


def line_edits(before: str, after: str) -> list[Edit]:
    """The smallest whole-line edits that turn ``before`` into ``after``, exactly.

    Applying them gives ``after`` character for character, so a quick fix writes what
    ``corral fix`` writes; whole lines keep the edits free of any position encoding.
    """
    old, new = _lines(before), _lines(after)

    def position(index: int) -> tuple[int, int]:
        if index < len(old):
            return (index, 0)
        if old and not old[-1].endswith(("\n", "\r")):
            return (len(old) - 1, len(old[-1]))
        return (len(old), 0)

    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [
        Edit(position(i1), position(i2), "".join(new[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


@dataclass(frozen=True)
class Insertion:
    """Text to insert at ``at``; ``cursor`` is where the reason is typed, after insertion."""

    at: tuple[int, int]
    before_cursor: str
    after_cursor: str
    cursor: tuple[int, int]

    @property
    def text(self) -> str:
        return self.before_cursor + self.after_cursor


def _newline(text: str) -> str:
    match = re.search(r"\r\n|\r|\n", text)
    return match.group(0) if match else "\n"


def _awkward_lines(text: str) -> tuple[set[int], set[int]]:
    """(lines holding a comment, lines whose end lies inside a string), 1-based."""
    comments: set[int] = set()
    inside: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                comments.add(tok.start[0])
            elif tok.end[0] > tok.start[0] and tok.type not in (tokenize.NL, tokenize.NEWLINE):
                inside.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments, inside


def suppression_insertion(text: str, finding: Finding) -> Insertion:
    """Where ``# corral: allow[CODE] reason=""`` goes for ``finding``, cursor in the reason.

    At the end of the finding's line; alone on the line above (with the line's indentation)
    when the line already has a comment, ends inside a string or continues with a
    backslash, where a trailing comment would be impossible or would change the other one.
    """
    lines = split_lines(text)
    index = min(max(finding.line, 1), len(lines)) - 1
    line = lines[index]
    opening = f"# corral: allow[{finding.code}] " + 'reason="'
    comments, inside = _awkward_lines(text)
    number = index + 1
    above_continues = index > 0 and lines[index - 1].rstrip().endswith("\\")
    own_line = number in comments or number in inside or line.rstrip().endswith("\\")
    if own_line and not above_continues:
        indent = line[: len(line) - len(line.lstrip())]
        before = indent + opening
        return Insertion((index, 0), before, '"' + _newline(text), (index, len(before)))
    before = "  " + opening  # with a comment here too only when the line above continues
    return Insertion((index, len(line)), before, '"', (index, len(line) + len(before)))
