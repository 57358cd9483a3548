"""Which modules a file may import, without parsing it (for the project-wide subclass index).

The index needs this for every file, including the many the prefilter rules out, so it is a
text scan of the decoded source, built to over-approximate: every ``import`` keyword counts
wherever it stands (after ``;`` or ``:``, on a continuation line, inside a string or a
comment), and in ``from X import a, b`` both ``X`` and the submodules ``X.a`` and ``X.b``
count, since ``from pkg import workers`` imports the module ``pkg.workers``. A name that is
not a module costs at most one needless re-check, never a missed one.
"""

from __future__ import annotations

import re
import unicodedata

from .patterns import LazyPattern
from .source import Unreadable, decode

__all__ = ["imported_modules"]

_GAP = r"(?:[ \t\f]|\\\r?\n|\\\r)*"  # what may stand between tokens of one logical line
_NAME = r"[^\W\d]\w*"
_DOTTED = rf"{_NAME}(?:{_GAP}\.{_GAP}{_NAME})*"
# ``from`` + dots (``...`` is one token) and/or a module, then the ``import`` keyword
_FROM = re.compile(rf"from(?=[\s.\\])({_GAP}(?:\.{_GAP})*(?:{_DOTTED})?){_GAP}import")
_SKIP = re.compile(r"(?:[ \t\f]|\\\r?\n|\\\r)*")
_DOTTED_NAME = re.compile(_DOTTED)
_BLANKS = re.compile(r"[\s\\]+")
_ALIAS = re.compile(rf"\bas[\s\\]+{_NAME}")  # ``x as y``: y names no module
_LINE_END = re.compile(r"(?<!\\)(?:\r\n|\r|\n)|;")
_NEWLINE = LazyPattern(r"\r\n|\r|\n")


def imported_modules(source: bytes | str | Unreadable) -> list[str]:
    """Modules the file (its bytes, or what ``decode`` made of them) may import, as written
    (``.workers`` and ``.`` stay relative)."""
    text = decode(source) if isinstance(source, bytes) else source
    if isinstance(text, Unreadable):
        return []  # a file Python cannot decode imports nothing (it is reported as CRL901)
    found: set[str] = set()
    i = text.find("import")
    while i >= 0:
        after = i + 6
        if _keyword_at(text, i, after):
            listed = _names_after(text, after)
            names = _DOTTED_NAME.findall(_ALIAS.sub("", listed) if "as" in listed else listed)
            module = _from_module(text, i)
            if module is None:
                found.update(_clean(name) for name in names)
            else:
                found.add(module)
                joint = "" if module.endswith(".") else "."
                found.update(f"{module}{joint}{_clean(name)}" for name in names)
        i = text.find("import", after)
    found.discard("")
    return sorted(found)


def _keyword_at(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or before in "_.") and not (after.isalnum() or after == "_")


def _from_module(text: str, at: int) -> str | None:
    """The module of ``from <module> import`` when the keyword at ``at`` ends one."""
    line = _logical_line_start(text, at)
    j = text.rfind("from", line, at)
    if j < 0:
        return None
    while j >= 0 and not _keyword_at(text, j, j + 4):
        j = text.rfind("from", line, j)
    if j < 0:
        return None
    m = _FROM.match(text, j)
    return _clean(m[1]) if m is not None and m.end() == at + 6 else None


def _logical_line_start(text: str, at: int) -> int:
    """Where the physical line holding ``at`` starts, following backslash continuations."""
    start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
    while start >= 2 and text[start - 1] in "\r\n":
        back = start - 1
        if text[back] == "\n" and back and text[back - 1] == "\r":
            back -= 1
        if back == 0 or text[back - 1] != "\\":
            break
        start = max(text.rfind("\n", 0, back - 1), text.rfind("\r", 0, back - 1)) + 1
    return start


def _names_after(text: str, start: int) -> str:
    """The import list after an ``import`` keyword: to the closing parenthesis (comments
    left out) when it opens one, else to the end of the logical line."""
    i = _SKIP.match(text, start).end()  # type: ignore[union-attr]  # it matches ""
    if i < len(text) and text[i] == "(":
        kept: list[str] = []
        pos = i + 1
        while pos < len(text):
            nl = _NEWLINE.search(text, pos)
            stop = nl.start() if nl else len(text)
            code = text[pos:stop].split("#", 1)[0]
            close = code.find(")")
            if close >= 0:
                kept.append(code[:close])
                break
            kept.append(code)
            pos = nl.end() if nl else len(text)
        return "\n".join(kept)
    end = _LINE_END.search(text, i)
    return text[i : end.start() if end else len(text)]


def _clean(name: str) -> str:
    """The name as the parser sees it: no blanks or continuations, NFKC-normalised."""
    if name.isascii():
        return name if name.replace(".", "").isidentifier() else _BLANKS.sub("", name)
    return unicodedata.normalize("NFKC", _BLANKS.sub("", name))
