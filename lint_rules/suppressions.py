"""Inline suppressions: ``# corral: allow[CODE] reason="..."`` and flake8's ``# noqa: CODE``.

A suppression is a recorded exception to the policy, so it must say why (CRL902) and must
still suppress something (CRL903); otherwise it is itself a finding.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field

__all__ = ["Suppression", "find_suppressions"]

_ALLOW = re.compile(
    r"corral:\s*allow\[(?P<codes>[^\]]*)\](?:\s*reason\s*=\s*(?:\"(?P<r1>[^\"]*)\"|'(?P<r2>[^']*)'))?"
)
_NOQA = re.compile(r"noqa\s*:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)", re.IGNORECASE)
_REASON = re.compile(r"reason\s*=\s*(?:\"(?P<r1>[^\"]*)\"|'(?P<r2>[^']*)')")
MARKERS = ("corral:", "noqa")


@dataclass
class Suppression:
    kind: str  # "allow" | "noqa"
    line: int
    col: int  # 1-based column of the comment
    codes: tuple[str, ...]
    reason: str
    lines: frozenset[int]  # the lines whose findings it covers
    used: set[str] = field(default_factory=set)


def _reason(match: re.Match[str] | None) -> str:
    if match is None:
        return ""
    return (match.group("r1") or match.group("r2") or "").strip()


def find_suppressions(text: str) -> list[Suppression]:
    """Suppressions in real comments only (never inside strings), found with ``tokenize``."""
    if not any(marker in text for marker in MARKERS):
        return []
    found: list[Suppression] = []
    code_lines: set[int] = set()
    comments: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                comments.append(tok)
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                code_lines.update(range(tok.start[0], tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    for tok in comments:
        line, col = tok.start
        own_line = line not in code_lines
        allow = _ALLOW.search(tok.string)
        if allow:
            codes = tuple(c.strip().upper() for c in allow.group("codes").split(",") if c.strip())
            covers = frozenset({line, line + 1}) if own_line else frozenset({line})
            found.append(Suppression("allow", line, col + 1, codes, _reason(allow), covers))
            continue
        noqa = _NOQA.search(tok.string)
        if noqa:
            codes = tuple(c.strip().upper() for c in noqa.group("codes").split(",") if c.strip())
            codes = tuple(c for c in codes if c.startswith("CRL"))
            if codes:
                reason = _reason(_REASON.search(tok.string, noqa.end()))
                found.append(Suppression("noqa", line, col + 1, codes, reason, frozenset({line})))
    return found
