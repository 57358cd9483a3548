"""Inline suppressions: ``# corral: allow[CODE] reason="..."`` and flake8's ``# noqa: CODE``.

A suppression is a recorded exception to the policy, so it must say why (CRL902) and must
still suppress something (CRL903); otherwise it is itself a finding. It may also say who owns
the exception and until when (``owner="team-payments" until="2027-03-01"``): past that day it
stops suppressing (CRL905).
"""

from __future__ import annotations

import io
import re
import time

from .patterns import LazyPattern
from .records import Record, field

__all__ = ["Suppression", "find_suppressions", "may_suppress", "today"]

_ALLOW = LazyPattern(r"corral:\s*allow\[(?P<codes>[^\]]*)\]")
# key="value" attributes after the codes, in any order
_ATTR = LazyPattern(r"\s*(?P<key>reason|until|owner)\s*=\s*(?:\"(?P<r1>[^\"]*)\"|'(?P<r2>[^']*)')")
_NOQA = LazyPattern(r"noqa\s*:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)", re.IGNORECASE)
_NOQA_ATTR = LazyPattern(
    r"(?P<key>reason|until|owner)\s*=\s*(?:\"(?P<r1>[^\"]*)\"|'(?P<r2>[^']*)')"
)
MARKERS = ("corral:", "noqa")
_DATE = LazyPattern(r"^\d{4}-\d{2}-\d{2}$")


def today() -> str:
    """The local date as ``until=`` compares it (YYYY-MM-DD), without importing datetime."""
    return time.strftime("%Y-%m-%d")


class Suppression(Record):
    kind: str  # "allow" | "noqa"
    line: int
    col: int  # 1-based column of the comment
    codes: tuple[str, ...]
    reason: str
    lines: frozenset[int]  # the lines whose findings it covers
    used: set[str] = field(default_factory=set)
    until: str = ""  # "YYYY-MM-DD": the last day it suppresses
    owner: str = ""  # who answers for the exception

    def lapsed(self, today: str) -> str | None:
        """None while the suppression holds; "expired" after its ``until`` day, "invalid"
        when ``until`` is not a YYYY-MM-DD date (which never suppresses)."""
        if not self.until:
            return None
        if not _DATE.match(self.until):
            return "invalid"
        try:
            from datetime import date  # only for a suppression that has until=

            date.fromisoformat(self.until)
        except ValueError:
            return "invalid"
        return "expired" if self.until < today else None


def _value(match: re.Match[str]) -> str:
    return (match.group("r1") or match.group("r2") or "").strip()


def _attributes(comment: str, start: int) -> dict[str, str]:
    """``reason``/``until``/``owner`` right after the codes of ``# corral: allow[...]``."""
    found: dict[str, str] = {}
    while (match := _ATTR.match(comment, start)) is not None:
        found.setdefault(match.group("key"), _value(match))
        start = match.end()
    return found


def may_suppress(text: str, prefixes: tuple[str, ...] = ("CRL",)) -> bool:
    """Whether ``text`` can hold a suppression at all: ``corral:``, or a ``noqa`` naming a
    code with one of corral's prefixes (a ``# noqa: E501`` belongs to another linter).

    Sound: a comment ``find_suppressions`` turns into a suppression is a piece of the text
    and the patterns are unanchored, so the same pattern matches the whole text there, with
    the same codes or more. Cheap: ``str.find`` for the words, the pattern only at a hit."""
    if "corral:" in text:
        return True
    if text.isascii():  # lower() keeps every offset
        lowered = text.lower()
        at = lowered.find("noqa")
        while at >= 0:
            match = _NOQA.match(text, at)
            if match is not None and _owned(match, prefixes):
                return True
            at = lowered.find("noqa", at + 4)
        return False
    return any(_owned(match, prefixes) for match in _NOQA.finditer(text))


def _owned(match: re.Match[str], prefixes: tuple[str, ...]) -> bool:
    return any(c.strip().upper().startswith(prefixes) for c in match.group("codes").split(","))


def find_suppressions(
    text: str, prefixes: tuple[str, ...] = ("CRL",), *, gate: bool = True
) -> list[Suppression]:
    """Suppressions in real comments only (never inside strings), found with ``tokenize``.

    ``# noqa`` codes are kept only for the rule prefixes corral owns (``CRL`` and any
    organisation prefix); the rest belong to other linters. ``gate=False`` tokenizes even a
    text with no marker (the reference path the differential test compares against).
    """
    if gate and not may_suppress(text, prefixes):
        return []
    import tokenize  # only for a text with a marker: most files have none

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
            attrs = _attributes(tok.string, allow.end())
            found.append(
                Suppression(
                    "allow",
                    line,
                    col + 1,
                    codes,
                    attrs.get("reason", ""),
                    covers,
                    until=attrs.get("until", ""),
                    owner=attrs.get("owner", ""),
                )
            )
            continue
        noqa = _NOQA.search(tok.string)
        if noqa:
            codes = tuple(c.strip().upper() for c in noqa.group("codes").split(",") if c.strip())
            codes = tuple(c for c in codes if c.startswith(prefixes))
            if codes:
                found_attrs: dict[str, str] = {}
                for match in _NOQA_ATTR.finditer(tok.string, noqa.end()):
                    found_attrs.setdefault(match.group("key"), _value(match))
                found.append(
                    Suppression(
                        "noqa",
                        line,
                        col + 1,
                        codes,
                        found_attrs.get("reason", ""),
                        frozenset({line}),
                        until=found_attrs.get("until", ""),
                        owner=found_attrs.get("owner", ""),
                    )
                )
    return found
