"""The one record every frontend produces and every reporter consumes."""

from __future__ import annotations

import re

from .patterns import LazyPattern
from .records import Record, field

__all__ = ["KINDS", "Finding", "printable"]

# C0/C1 controls, DEL, line and paragraph separators, bidirectional overrides ("trojan source")
_CONTROL = LazyPattern("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``), as git and
    ruff quote odd paths: a file name or comment must not move the cursor, colour the
    terminal or start a line that CI reads as a workflow command."""
    return text if text.isprintable() else _CONTROL.sub(_escape, text)


KINDS = ("import", "call", "reference", "subclass", "instantiation", "dynamic")
"""What a finding is about: an import of a banned name, a call of it, any other reference to
it, a class deriving from it, an instantiation of such a class, or a dynamic lookup of it.
Meta findings (unreadable file, suppression problems) have no kind."""


class Finding(Record, frozen=True, order=True):
    """A rule violation at a 1-based line and 1-based character column.

    ``qualname``, ``kind`` and ``evades`` carry what was found as data, so fixes and
    reporters never parse ``message``: the banned qualified name (for a subclass or its
    instantiation, the banned base), one of ``KINDS``, and for a dynamic lookup the code of
    the rule it evades.
    """

    path: str
    line: int
    col: int
    code: str
    message: str
    end_line: int = 0
    end_col: int = 0
    # the source line itself, so baselines and fingerprints need not re-read the file
    source: str = field(default="", compare=False, repr=False)
    qualname: str = field(default="", compare=False)
    kind: str = field(default="", compare=False)
    evades: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "end_line": self.end_line or self.line,
            "end_col": self.end_col or self.col,
            "code": self.code,
            "message": self.message,
            "qualname": self.qualname,
            "kind": self.kind,
            "evades": self.evades,
        }
