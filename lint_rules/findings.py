"""The one record every frontend produces and every reporter consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["KINDS", "Finding"]

KINDS = ("import", "call", "reference", "subclass", "instantiation", "dynamic")
"""What a finding is about: an import of a banned name, a call of it, any other reference to
it, a class deriving from it, an instantiation of such a class, or a dynamic lookup of it.
Meta findings (unreadable file, suppression problems) have no kind."""


@dataclass(frozen=True, order=True)
class Finding:
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
