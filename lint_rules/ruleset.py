"""The enabled rules, indexed for the resolver: qualified name -> rule code.

Built once per (catalogue, configuration) and shared by every file, so per-reference lookups
are a dict hit.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from .catalogue import Catalogue
from .packages import package_of

__all__ = ["DYNAMIC_WORDS", "LOOP_QUALNAME", "RuleSet", "prefilter_text"]

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
DYNAMIC_WORDS = ("getattr", "import_module", "__import__", "modules", "vars", "__dict__")
"""Words a dynamic lookup cannot be written without: with the dynamic-lookup rule on, they
stand in for a banned member name, whose spelling the lookup may build from pieces."""
LOOP_QUALNAME = "asyncio.AbstractEventLoop"
"""Methods on traced loops are matched as ``asyncio.AbstractEventLoop.<method>``, so a bound
method (``submit = loop.create_task``) is a banned name like any other."""


@dataclass
class RuleSet:
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
    prefilter_modules: re.Pattern[str] = field(default=re.compile("(?!)"))
    prefilter_members: re.Pattern[str] = field(default=re.compile("(?!)"))
    member_words: re.Pattern[str] = field(default=re.compile("(?!)"))
    # suppression governance: rules no inline comment may switch off, and the day expiry is
    # judged on (part of the cache key, so a result never outlives the day it was made)
    no_suppress: frozenset[str] = frozenset()
    today: str = ""
    prefixes: tuple[str, ...] = ("CRL",)

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
        call_only: set[str] = set()
        method_names: set[str] = set()
        for rule in catalogue:
            call_only.update(rule.calls)
            for target in (*rule.targets, *rule.calls):
                modules.add(target.split(".")[0])
                members.add(target.rsplit(".", 1)[-1].rstrip("*"))
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
        rs.subclass_codes = frozenset(rs.structural.get("subclass-instantiation", ()))
        modules.update(m.split(".")[0] for m in LOOP_FACTORIES | LOOP_TYPES)
        members.discard("")
        rs.modules = frozenset(modules)
        if modules and members:
            # a dynamic lookup can reach a module and a member by names built from pieces
            dynamic = DYNAMIC_WORDS if rs.dynamic_codes else ()
            rs.prefilter_modules = _any_of([*modules, *dynamic])
            rs.prefilter_members = _any_of([*members, *dynamic])
            rs.member_words = re.compile(rf"\b(?:{_any_of(members).pattern})\b")
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

    def may_match(self, text: str, path: str | None = None) -> bool:
        """Cheap prefilter, sound by construction: no finding is possible unless the decoded
        text names a watched module (or, with the dynamic-lookup rule on, a way to import one
        by a computed name) and a banned member (or a way to look one up by a computed name).

        It looks for the words anywhere in the text, not for import statements, so no
        statement separator, continuation line or encoding can hide an import from it;
        identifiers are compared after NFKC normalisation, as the parser compares them. A
        property test keeps it an over-approximation of what the resolver can match.
        """
        text = prefilter_text(text)
        reaches = self.prefilter_modules.search(text) is not None
        if not reaches and path is not None and _RELATIVE.search(text):
            # relative imports inside a package named like a watched module (asyncio's own)
            package = package_of(path)
            reaches = package is not None and package.split(".")[0] in self.modules
        return reaches and self.prefilter_members.search(text) is not None


_RELATIVE = re.compile(r"from[\s\\]*\.")


def prefilter_text(text: str) -> str:
    """The text the prefilter searches: identifiers as the parser sees them (NFKC), and NUL
    bytes dropped so that a NUL inside a word cannot hide a file that will not parse."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def _any_of(words: Iterable[str]) -> re.Pattern[str]:
    """One pass over the text for any of ``words`` anywhere (no word boundaries: what the
    parser calls an identifier is not what ``\\b`` calls a word)."""
    return re.compile("|".join(sorted(set(map(re.escape, words)), key=len, reverse=True)))
