"""The enabled rules, indexed for the resolver: qualified name -> rule code.

Built once per (catalogue, configuration) and shared by every file, so per-reference lookups
are a dict hit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .catalogue import Catalogue
from .packages import package_of

__all__ = ["DYNAMIC_WORDS", "LOOP_QUALNAME", "RuleSet"]

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
"""Words a dynamic lookup cannot be written without: with the dynamic-lookup rule on, a
function holding one is resolved even when it names no banned member, whose spelling the
lookup may build from pieces (``getattr(asyncio, "create_" + "task")``)."""
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
    module_words: tuple[bytes, ...] = ()
    modules: frozenset[str] = frozenset()
    member_words: re.Pattern[str] = field(default=re.compile("(?!)"))
    member_names: tuple[str, ...] = ()  # the words member_words matches
    # suppression governance: rules no inline comment may switch off, and the day expiry is
    # judged on (part of the cache key, so a result never outlives the day it was made)
    no_suppress: frozenset[str] = frozenset()
    today: str = ""
    prefixes: tuple[str, ...] = ("CRL",)
    # the prefilter pairs each watched module with the member names of its own targets
    module_members: dict[str, frozenset[str]] = field(default_factory=dict)
    module_bytes: frozenset[bytes] = frozenset()
    quoted_modules: re.Pattern[bytes] = field(default=re.compile(b"(?!)"))
    member_checks: dict[frozenset[bytes], tuple[tuple[bytes, ...], re.Pattern[bytes]]] = field(
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
            for module in modules:
                pairs.setdefault(module, set()).update(DYNAMIC_WORDS)
        members.discard("")
        rs.module_members = {m: frozenset(w for w in words if w) for m, words in pairs.items()}
        if modules and members:
            alternation = "|".join(sorted(map(re.escape, modules)))
            rs.module_words = tuple(sorted(m.encode() for m in modules))
            rs.modules = frozenset(modules)
            rs.module_bytes = frozenset(rs.module_words)
            rs.quoted_modules = re.compile(rf"[\'\"]({alternation})[\'\".]".encode())
            member_alt = "|".join(sorted(map(re.escape, members), key=len, reverse=True))
            rs.member_words = re.compile(rf"\b(?:{member_alt})\b")
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
        """Cheap prefilter: no finding is possible unless the file imports (or names in a
        string, for dynamic imports) a watched module and mentions a banned member name.

        Works on bytes, before decoding: every encoding Python source may declare is
        ASCII-compatible, and the words are ASCII.
        """
        data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
        referenced = self.referenced_modules(data, path)
        if not referenced:
            return False
        words, pattern = _member_check(frozenset(referenced), self)
        # substring tests are cheap and over-approximate; the word-boundary regex confirms
        return any(word in data for word in words) and pattern.search(data) is not None

    def referenced_modules(self, data: bytes, path: str | None = None) -> set[bytes]:
        """The watched top-level modules this file imports, or names in a string where a
        dynamic import could load it (``import_module("threading")``, ``sys.modules[...]``).

        Scans with literal-prefixed patterns (``import``, ``from``), which the regex engine
        finds with a fast search, instead of a pattern tried at every position.
        """
        found: set[bytes] = set()
        for tail in _IMPORT_TAIL.findall(data):
            found.update(_NAME.findall(tail))
        found.update(module.split(b".", 1)[0] for module in _FROM.findall(data))
        if any(word in data for word in _IMPORTER_WORDS):
            found.update(self.quoted_modules.findall(data))
        referenced = found & self.module_bytes
        if path is not None and b"from ." in data:
            # relative imports inside a package named like a watched module (asyncio's own)
            package = package_of(path)
            top = package.split(".")[0].encode() if package is not None else b""
            if top in self.module_bytes:
                referenced.add(top)
        return referenced


def members_of(target: str) -> str:
    """The member name a reference to ``target`` must spell (``Thread``, ``spawn`` for
    ``gevent.spawn*``)."""
    return target.rsplit(".", 1)[-1].rstrip("*")


# ``import a, b.c as d`` (continued lines too) and ``from a.b import ...``
_IMPORT_TAIL = re.compile(rb"import[ \t]+((?:[^\n#;\\]|\\(?:\r?\n)?)*)")
_FROM = re.compile(rb"from(?:[ \t]|\\\r?\n)+([\w.]+)")
_NAME = re.compile(rb"[A-Za-z_]\w*")
_IMPORTER_WORDS = (b"import_module", b"__import__", b"modules")


def _member_check(
    modules: frozenset[bytes], rules: RuleSet
) -> tuple[tuple[bytes, ...], re.Pattern[bytes]]:
    """The member words of these modules' targets, and one regex for them (files import few
    combinations of watched modules, so each is computed once per rule set)."""
    known = rules.member_checks.get(modules)
    if known is not None:
        return known
    words = sorted(
        {w.encode() for m in modules for w in rules.module_members.get(m.decode(), ())},
        key=len,
        reverse=True,
    )
    pattern = re.compile(rb"\b(?:" + b"|".join(map(re.escape, words)) + rb")\b")
    check = rules.member_checks[modules] = (tuple(words), pattern)
    return check
