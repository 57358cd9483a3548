"""Could the string constants of a source text fold to a given dotted name? Text evidence only.

The resolver folds strings (``resolver._const_str``) from literals joined by ``+`` or by
implicit concatenation, ``%s``/``%d``/``%r`` and bare ``{}``/``{0}`` placeholders, and
``sep.join([...])``; their arguments may also be numbers (or bools). So every character of a
folded string comes from a literal's value or a number's spelling. Unless a number spelling
(digits, ``inf``, ``nan``, ``True``, ``False``) can be part of the names asked about, a
folded name is then a concatenation of *pieces*: runs of name characters of literal values
that start where a literal starts, a placeholder ends or a line continuation ends, and stop
where the literal ends, a placeholder starts or a backslash appears (any other character
next to the run would be part of the folded string, and is no name character). Literal
values are read from the source with the escapes that make a name or placeholder character
(``"as\\x79ncio"``) replaced by it. ``Pieces`` collects the runs; ``spells`` asks whether
some name is a concatenation of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cached_property

from .patterns import LazyPattern
from .records import Record

__all__ = ["Alphabet", "Pieces"]

# an escape that can make a name or placeholder character
_ESCAPE = LazyPattern(
    r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|N\{([^}\n]*)\}|([0-7]{1,3}))"
)
_NUMBER_SPELLINGS = ("inf", "nan", "True", "False")  # str() of floats such as 1e999, bools


class Alphabet(Record, frozen=True):
    """The names asked about: the run patterns over their characters, and every substring
    of them (a run that is none cannot be part of a name). Both are made when a file first
    needs them: most files hold no dynamic lookup, and a one-file check should not pay."""

    names: tuple[str, ...]
    run: LazyPattern
    keep: frozenset[str]  # what an escape may stand for in the text searched: names, % { }
    numbers_spell: bool  # a number or bool argument could spell part of a name: no evidence

    @classmethod
    def of(cls, names: Iterable[str]) -> Alphabet:
        names = sorted(set(names))
        chars = "".join(sorted(re.escape(c) for c in set("".join(names)) | {"."}))
        # a run starts after a quote, a closing brace ({} {0} and \N{...}), a %s/%d/%r or a
        # line continuation (one character class first: the search skips to it quickly); the
        # start is consumed, which is safe because no start character but s/d/r is a name
        # character and those only follow a %; the run is returned with what stops it (not
        # consumed, it may start the next run): a quote, a placeholder, a backslash or nothing
        run = LazyPattern(
            r"[\'\"}%\\](?:(?<=%)[sdr]|(?<=\\)\r\n?|(?<=\\)\n|(?<=['\"}]))"
            rf"([{chars}]+)(?=(['\"%{{\\]?))"
        )
        numbers = any(c.isdigit() for c in "".join(names)) or any(
            w in n for n in names for w in _NUMBER_SPELLINGS
        )
        keep = frozenset("".join(names)) | {".", "%", "{", "}"}
        return cls(tuple(names), run, keep, numbers)

    @cached_property
    def infixes(self) -> frozenset[str]:
        names = self.names
        return frozenset(
            n[i:j] for n in names for i in range(len(n)) for j in range(i + 1, len(n) + 1)
        )


class Pieces:
    """The runs of name characters of ``text[start:end]`` that a folded string may use."""

    __slots__ = ("alphabet", "closed", "dotted")

    def __init__(self, alphabet: Alphabet, text: str, start: int = 0, end: int | None = None):
        end = len(text) if end is None else end
        if _ESCAPE.search(text, start, end):
            text = _unescape(text[start:end], alphabet.keep)
            start, end = 0, len(text)
        self.alphabet = alphabet
        infixes = alphabet.infixes
        runs = set(alphabet.run.findall(text, start, end))
        # "%" + "sasyncio": a placeholder split over two literals ends inside the run
        runs.update([(run[1:], stop) for run, stop in runs if run[0] in "sdr" and run[1:]])
        # runs that stop where a folded piece may stop, and could be part of a name
        self.closed = {run for run, stop in runs if stop and run in infixes}
        # runs with a dot, whatever follows, that could end a module name before the dot
        self.dotted = {run for run, _ in runs if "." in run and run.split(".", 1)[0] in infixes}

    def spells(self, names: frozenset[str], prefixes: frozenset[str]) -> bool:
        """Some name in ``names`` could be a folded string here (``prefixes`` holds every
        non-empty prefix of every name)."""
        return self._may_spell(names, prefixes, open_end=False)

    def spells_head(self, module: str, prefixes: frozenset[str]) -> bool:
        """A folded string here could be ``module`` or start with ``module.``: an importer's
        argument naming the module or one of its submodules (``__import__`` keeps the head)."""
        return self._may_spell(frozenset({module}), prefixes, open_end=True)

    def _may_spell(
        self, names: frozenset[str], prefixes: frozenset[str], *, open_end: bool
    ) -> bool:
        if self.alphabet.numbers_spell:
            return True
        frontier = [""]
        seen = {""}
        while frontier:
            done = frontier.pop()
            for run in self.closed:
                joined = done + run
                if joined in names:
                    return True
                if joined in prefixes and joined not in seen:
                    seen.add(joined)
                    frontier.append(joined)
            if open_end:
                for run in self.dotted:
                    joined = done + run
                    if any(joined.startswith(name + ".") for name in names):
                        return True
        return False


def _unescape(text: str, keep: frozenset[str]) -> str:
    """``text`` with each escape that makes a name character or a placeholder character
    (``\\x25`` is ``%``) replaced by that character. Where the escape is no escape (a raw
    string, ``\\\\x41``) the literal holds a backslash there instead, so no folded name
    can run through that spot either way: replacing it only adds runs."""

    def char(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2) or match.group(3)
        try:
            if code is not None:
                made = chr(int(code, 16))
            elif match.group(4) is not None:
                made = unicodedata.lookup(match.group(4))
            else:
                made = chr(int(match.group(5), 8))
        except (KeyError, ValueError, OverflowError):
            return match.group(0)
        return made if made in keep else match.group(0)

    return _ESCAPE.sub(char, text)
