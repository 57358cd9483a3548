"""The enabled rules, indexed for the resolver: qualified name -> rule code.

Built once per (catalogue, configuration) and shared by every file, so per-reference lookups
are a dict hit.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from .catalogue import Catalogue
from .packages import package_of
from .records import Record, field
from .spelling import Alphabet, Pieces

__all__ = [
    "GETATTR_WORDS",
    "LOOKUP_WORDS",
    "LOOP_QUALNAME",
    "RuleSet",
    "has_word",
    "prefilter_text",
]

# Where event loops come from, and how they are annotated: receivers traced to these are loops.
LOOP_FACTORIES = frozenset(
    f"{mod}.{fn}"
    for mod in ("asyncio", "asyncio.events")
    for fn in ("get_running_loop", "get_event_loop", "new_event_loop")
) | {"uvloop.new_event_loop"}
LOOP_TYPES = frozenset(
    {
        "asyncio.AbstractEventLoop",
        "asyncio.events.AbstractEventLoop",
        "asyncio.BaseEventLoop",
        "asyncio.base_events.BaseEventLoop",
        "asyncio.SelectorEventLoop",
        "asyncio.ProactorEventLoop",
        "uvloop.Loop",
    }
)
GATHER = frozenset({"asyncio.gather", "asyncio.tasks.gather"})
LOOKUP_WORDS = ("import_module", "__import__", "modules")
"""Words an importer lookup cannot be written without (``modules`` with ``sys``): it reaches
a module by a name folded from string constants, so no module word need appear."""
GETATTR_WORDS = ("getattr", "vars", "__dict__")
"""Words an attribute lookup on a module cannot be written without: the module itself is
named (or reached through an importer)."""
LOOP_QUALNAME = "asyncio.AbstractEventLoop"
"""Methods on traced loops are matched as ``asyncio.AbstractEventLoop.<method>``, so a bound
method (``submit = loop.create_task``) is a banned name like any other."""


class RuleSet(Record):
    """Enabled rules plus the lookup tables derived from their targets."""

    catalogue: Catalogue
    enabled: frozenset[str]
    exact: dict[str, str] = field(default_factory=dict)
    wildcards: list[tuple[str, str]] = field(default_factory=list)
    all_exact: dict[str, str] = field(default_factory=dict)
    loop_methods: dict[str, str] = field(default_factory=dict)
    method_names: frozenset[str] = frozenset()  # every catalogue method, enabled or not
    call_only: frozenset[str] = frozenset()  # targets reported where called, nowhere else
    # structural matcher name (a catalogue ``also:`` entry) -> enabled codes that use it
    structural: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subclass_codes: frozenset[str] = frozenset()
    modules: frozenset[str] = frozenset()
    member_names: tuple[str, ...] = ()  # every member name of a watched target
    # suppression governance: rules no inline comment may switch off, and the day expiry is
    # judged on (part of the cache key, so a result never outlives the day it was made)
    no_suppress: frozenset[str] = frozenset()
    today: str = ""
    prefixes: tuple[str, ...] = ("CRL",)
    # the prefilter pairs each watched module with the member names of its own targets
    module_members: dict[str, frozenset[str]] = field(default_factory=dict)
    member_checks: dict[frozenset[str], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # what a dynamic lookup's folded strings must spell: module -> the dotted tails of its
    # enabled targets (``create_task``, ``tasks.create_task``, the full name), and prefixes
    dynamic_tails: dict[str, frozenset[str]] = field(default_factory=dict)
    alphabet: Alphabet | None = None
    tail_checks: dict[frozenset[str], tuple[frozenset[str], frozenset[str]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(
        cls,
        catalogue: Catalogue,
        enabled: Iterable[str],
        *,
        no_suppress: Iterable[str] = (),
        today: str = "",
    ) -> RuleSet:
        on = frozenset(enabled)
        rs = cls(catalogue=catalogue, enabled=on, today=today)
        rs.no_suppress = frozenset(
            rule.code for rule in catalogue if any(rule.code.startswith(s) for s in no_suppress)
        )
        rs.prefixes = tuple(sorted({re.sub(r"\d+$", "", code) for code in catalogue.rules}))
        modules: set[str] = set()
        members: set[str] = set()
        pairs: dict[str, set[str]] = {}
        call_only: set[str] = set()
        method_names: set[str] = set()
        for rule in catalogue:
            call_only.update(rule.calls)
            for target in (*rule.targets, *rule.calls):
                modules.add(target.split(".")[0])
                members.add(target.rsplit(".", 1)[-1].rstrip("*"))
                pairs.setdefault(target.split(".")[0], set()).add(members_of(target))
                rs.all_exact[target] = rule.code
                if rule.code not in on:
                    continue
                if target.endswith("*"):
                    rs.wildcards.append((target[:-1], rule.code))
                else:
                    rs.exact[target] = rule.code
            if rule.methods:
                modules.add("asyncio")
                members.update(rule.methods)
                method_names.update(rule.methods)
                for method in rule.methods:
                    rs.all_exact[f"{LOOP_QUALNAME}.{method}"] = rule.code
                if rule.code in on:
                    for method in rule.methods:
                        rs.loop_methods[method] = rule.code
                        rs.exact[f"{LOOP_QUALNAME}.{method}"] = rule.code
            if rule.code in on:
                for matcher in rule.also:
                    rs.structural[matcher] = (*rs.structural.get(matcher, ()), rule.code)
        rs.call_only = frozenset(call_only)
        rs.method_names = frozenset(method_names)
        if rs.gather_codes:
            modules.add("asyncio")
            members.add("gather")
            pairs.setdefault("asyncio", set()).add("gather")
        rs.subclass_codes = frozenset(rs.structural.get("subclass-instantiation", ()))
        loop_modules = {m.split(".")[0] for m in LOOP_FACTORIES | LOOP_TYPES}
        modules.update(loop_modules)
        for module in loop_modules:  # a loop reached through this module, then its method
            pairs.setdefault(module, set()).update(method_names)
        if rs.dynamic_codes:  # getattr(asyncio, "create_" + "task") names no member
            tails: dict[str, set[str]] = {}
            for qualname, code in rs.all_exact.items():
                if code in on:  # a lookup of a target whose rule is off reports nothing
                    parts = qualname.split(".")
                    tails.setdefault(parts[0], set()).update(
                        ".".join(parts[i:]) for i in range(len(parts))
                    )
            rs.dynamic_tails = {m: frozenset(t) for m, t in tails.items()}
            rs.alphabet = Alphabet.of([*rs.all_exact, *modules])
        members.discard("")
        rs.module_members = {m: frozenset(w for w in words if w) for m, words in pairs.items()}
        rs.modules = frozenset(modules)
        if modules and members:
            rs.member_names = tuple(sorted(members))
        return rs

    @property
    def gather_codes(self) -> tuple[str, ...]:
        return self.structural.get("gather-comprehension", ())

    @property
    def dynamic_codes(self) -> tuple[str, ...]:
        return self.structural.get("dynamic-lookup", ())

    @property
    def gather_code(self) -> str | None:
        """The first enabled rule using the gather matcher (kept for existing callers)."""
        return next(iter(self.gather_codes), None)

    @property
    def dynamic_code(self) -> str | None:
        return next(iter(self.dynamic_codes), None)

    def lookup(self, qualname: str) -> str | None:
        """The enabled rule that bans this qualified name, if any."""
        code = self.exact.get(qualname)
        if code is None and self.wildcards:
            for prefix, wcode in self.wildcards:
                if qualname.startswith(prefix):
                    return wcode
        return code

    def banned_anywhere(self, qualname: str) -> str | None:
        """The rule banning this name whether or not it is enabled (for dynamic lookups)."""
        return self.all_exact.get(qualname)

    def may_match(self, source: str | bytes, path: str | None = None) -> bool:
        """Cheap prefilter, sound by construction: no finding is possible unless the decoded
        text names a watched module and a member name of that module's targets, or (with the
        dynamic-lookup rule on) holds a lookup whose folded strings could spell one of the
        targets (``may_look_up``).

        It looks for the words anywhere in the text, not for import statements, so no
        statement separator, continuation line or encoding can hide an import from it;
        identifiers are compared after NFKC normalisation, as the parser compares them. A
        property test keeps it an over-approximation of what the resolver can match.
        Bytes are decoded first; bytes that do not decode pass (they are reported as CRL901).
        """
        if isinstance(source, bytes):
            from .source import Unreadable, decode

            decoded = decode(source)
            if isinstance(decoded, Unreadable):
                return True
            source = decoded
        text = prefilter_text(source)
        referenced = self.referenced_modules(text, path)
        if referenced and self.names_member(text, referenced):
            return True
        if not self.dynamic_codes:
            return False
        raw = source.replace("\x00", "") if "\x00" in source else source
        return self.may_look_up(text, raw, referenced)

    def names_member(self, text: str, modules: frozenset[str]) -> bool:
        """A member name of one of ``modules``' targets appears as a word."""
        words = self.member_checks.get(modules)
        if words is None:
            found = {w for m in modules for w in self.module_members.get(m, ())}
            words = self.member_checks[modules] = tuple(sorted(found, key=len, reverse=True))
        return any(has_word(text, word) for word in words)

    def may_look_up(self, text: str, raw: str, referenced: frozenset[str]) -> bool:
        """Could a dynamic lookup in this file report a target its words do not name?

        A dynamic finding's name is a module's (reached through ``getattr``, ``vars`` or
        ``__dict__`` on the module, which is then named, or through an importer,
        ``import_module``/``__import__``/``sys.modules``, whose argument is a folded string
        that starts with the module's name) followed by attributes, whose last one is a
        member word (found by ``names_member``), or by a folded string that is a dotted tail
        of the target. ``text`` is the NFKC text words are found in; ``raw`` the decoded
        text, where string values are as the parser reads them (``spelling`` says when a
        folded string can be a given name).
        """
        lookup_word = self.lookup_word(text)
        # getattr, vars and __dict__ need the module named: no watched name, no such route
        getattr_word = bool(referenced) and any(has_word(text, w) for w in GETATTR_WORDS)
        if self.alphabet is None or not (lookup_word or getattr_word):
            return False
        pieces = Pieces(self.alphabet, raw)
        modules = set(referenced) if getattr_word else set()
        if lookup_word:
            for module in self.dynamic_tails:
                if module not in modules and pieces.spells_head(module, _prefixes(module)):
                    if self.names_member(text, frozenset({module})):
                        return True
                    modules.add(module)
        return self.may_spell_tail(pieces, frozenset(modules))

    def may_spell_tail(self, pieces: Pieces, modules: frozenset[str] | None = None) -> bool:
        """The folded strings ``pieces`` allows could spell a dotted tail of an enabled target
        of one of ``modules`` (every watched module when None): the one test the prefilter and
        the resolver's per-function skip share."""
        key = frozenset(self.dynamic_tails) if modules is None else modules
        tails, prefixes = self._tails_of(key)
        return bool(tails) and pieces.spells(tails, prefixes)

    def pieces(self, raw: str, start: int = 0, end: int | None = None) -> Pieces | None:
        """The string pieces of ``raw[start:end]`` (None without the dynamic-lookup rule)."""
        return None if self.alphabet is None else Pieces(self.alphabet, raw, start, end)

    @staticmethod
    def lookup_word(text: str) -> bool:
        """An importer lookup may be written here (``sys.modules`` needs ``sys``)."""
        return (
            "import_module" in text
            or "__import__" in text
            or (has_word(text, "modules") and has_word(text, "sys"))
        )

    def _tails_of(self, modules: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        found = self.tail_checks.get(modules)
        if found is None:
            tails = frozenset(t for m in modules for t in self.dynamic_tails.get(m, ()))
            prefixes = frozenset(p for t in tails for p in _prefixes(t))
            found = self.tail_checks[modules] = (tails, prefixes)
        return found

    def referenced_modules(self, text: str, path: str | None = None) -> frozenset[str]:
        """The watched top-level modules whose name appears as a word anywhere in the
        (prefilter) text, or that a relative import inside the watched package reaches."""
        found = {module for module in self.modules if has_word(text, module)}
        if path is not None and _RELATIVE.search(text):
            # relative imports inside a package named like a watched module (asyncio's own)
            package = package_of(path)
            top = package.split(".")[0] if package is not None else ""
            if top in self.modules:
                found.add(top)
        return frozenset(found)


_RELATIVE = re.compile(r"from[\s\\]*\.")


@lru_cache(maxsize=1024)
def _prefixes(name: str) -> frozenset[str]:
    """The non-empty prefixes of ``name``."""
    return frozenset(name[:i] for i in range(1, len(name) + 1))


def has_word(text: str, word: str) -> bool:
    """``word`` in ``text`` with no word character (``\\w``) on either side: ``str.find``
    does the searching. Sound for identifiers in NFKC text: a character ``\\w`` counts as a
    letter cannot stand next to an identifier without being part of it (or a syntax error)."""
    size = len(word)
    start = text.find(word)
    while start >= 0:
        end = start + size
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            return True
        start = text.find(word, start + 1)
    return False


def prefilter_text(text: str) -> str:
    """The text the prefilter searches: identifiers as the parser sees them (NFKC), and NUL
    bytes dropped so that a NUL inside a word cannot hide a file that will not parse."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def members_of(target: str) -> str:
    """The member name a reference to ``target`` must spell (``Thread``, ``spawn`` for
    ``gevent.spawn*``)."""
    return target.rsplit(".", 1)[-1].rstrip("*")
