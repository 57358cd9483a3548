"""Load and validate rules.yaml, the versioned rule catalogue.

The catalogue is the single source of truth for codes, docs and examples, so a broken catalogue
must fail loudly at load time with the field and rule it concerns, never half-load.
"""

from __future__ import annotations

import re
from pathlib import Path

from .patterns import LazyPattern
from .records import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Catalogue", "CatalogueError", "Example", "Rule", "load_catalogue", "parse_version"]

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
CATALOGUE_CACHE_FORMAT = 2  # 2: keyed by BLAKE2b
_EXPECT = re.compile(r"^(\d+):(\d+) ([A-Z]{2,8}\d{3})$")
_PREFIX = LazyPattern(r"^[A-Z]{2,8}$")
BUILTIN_PREFIX = "CRL"
# structural matchers that exactly one built-in rule owns: an organisation rule cannot take them
BUILTIN_ONLY = ("gather-comprehension", "dynamic-lookup")
EXAMPLE_CONFIG = ("no-suppress",)
LEVELS = ("default", "strict")
STRUCTURAL = ("subclass-instantiation", "gather-comprehension", "dynamic-lookup")
RULE_FIELDS = {
    "code",
    "name",
    "since",
    "level",
    "summary",
    "targets",
    "calls",
    "also",
    "methods",
    "replacement",
    "rationale",
    "cwe",
    "owasp",
    "examples",
}
REQUIRED = ("code", "name", "since", "level", "summary", "replacement", "rationale", "examples")


class CatalogueError(Exception):
    """The catalogue file is malformed; the message names the file, rule and field."""


def parse_version(text: str) -> tuple[int, int, int]:
    """Parse "1.2.3" (or a "1.2" pin, read as 1.2.x's upper bound) into a comparable tuple."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version: {text!r} (expected MAJOR.MINOR[.PATCH])")
    nums = [int(p) for p in parts]
    while len(nums) < 3:
        nums.append(10**9)  # a "1.0" pin admits every 1.0.x
    return nums[0], nums[1], nums[2]


class Example(Record, frozen=True):
    code: str
    expect: tuple[tuple[int, int, str], ...] = ()
    # the configuration the example runs under (only what the example needs to show its rule)
    no_suppress: tuple[str, ...] = ()


class Rule(Record, frozen=True):
    code: str
    name: str
    since: str
    level: str
    summary: str
    replacement: str
    rationale: str
    targets: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()  # flagged only where called (classes whose other uses are inert)
    also: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    cwe: tuple[str, ...] = ()
    owasp: tuple[str, ...] = ()
    invalid: tuple[Example, ...] = ()
    valid: tuple[Example, ...] = ()
    origin: str = "rules.yaml"  # the catalogue file (or pack) that declared the rule

    @property
    def strict(self) -> bool:
        return self.level == "strict"


class Catalogue(Record, frozen=True):
    version: str
    rules: dict[str, Rule] = field(default_factory=dict)
    source: str = "rules.yaml"
    prefix: str = BUILTIN_PREFIX

    def __iter__(self) -> Any:
        return iter(self.rules.values())

    def get(self, code: str) -> Rule | None:
        return self.rules.get(code)

    def nearest(self, code: str) -> str | None:
        """The closest known code or rule name, for 'did you mean' messages."""
        names = list(self.rules) + [r.name for r in self.rules.values()]
        import difflib  # only for messages: a clean run never imports it

        match = difflib.get_close_matches(code, names, n=1, cutoff=0.5)
        return match[0] if match else None


def _fail(where: str, message: str) -> CatalogueError:
    return CatalogueError(f"{where}: {message}")


def _strings(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"field {name!r} must be a list of strings")
    return tuple(value)


def _example_config(item: dict[str, Any], at: str) -> tuple[str, ...]:
    raw = item.get("config")
    if raw is None:
        return ()
    if not isinstance(raw, dict) or set(raw) - set(EXAMPLE_CONFIG):
        raise _fail(at, f"an example's 'config' may only set {', '.join(EXAMPLE_CONFIG)}")
    return _strings(raw.get("no-suppress"), at, "config.no-suppress")


def _examples(raw: Any, where: str) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    if not isinstance(raw, dict) or set(raw) - {"invalid", "valid"}:
        raise _fail(where, "field 'examples' must be a mapping with keys 'invalid' and 'valid'")
    invalid: list[Example] = []
    for i, item in enumerate(raw.get("invalid") or []):
        at = f"{where}, examples.invalid[{i}]"
        if not isinstance(item, dict) or not {"code", "expect"} <= set(item) <= {
            "code",
            "expect",
            "config",
        }:
            raise _fail(at, "an invalid example is a mapping with 'code' and 'expect'")
        expect = []
        for entry in _strings(item["expect"], at, "expect"):
            m = _EXPECT.match(entry)
            if not m:
                raise _fail(at, f"expectation {entry!r} is not 'LINE:COL CODE'")
            expect.append((int(m[1]), int(m[2]), m[3]))
        config = _example_config(item, at)
        invalid.append(Example(str(item["code"]), tuple(sorted(expect)), config))
    valid: list[Example] = []
    for i, item in enumerate(raw.get("valid") or []):
        at = f"{where}, examples.valid[{i}]"
        if not isinstance(item, dict) or not {"code"} <= set(item) <= {"code", "config"}:
            raise _fail(at, "a valid example is a mapping with only 'code'")
        valid.append(Example(str(item["code"]), (), _example_config(item, at)))
    return tuple(invalid), tuple(valid)


def _rule(raw: Any, where: str, prefix: str = BUILTIN_PREFIX, origin: str = "rules.yaml") -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "each rule must be a mapping")
    unknown = set(raw) - RULE_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        import difflib

        close = difflib.get_close_matches(name, sorted(RULE_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(where, f"unknown field {name!r}{hint}")
    for name in REQUIRED:
        if name not in raw or raw[name] in (None, ""):
            raise _fail(where, f"missing required field {name!r}")
    code = str(raw["code"])
    if not re.fullmatch(rf"{prefix}\d{{3}}", code):
        raise _fail(where, f"code {code!r} is not of the form {prefix}nnn")
    if raw["level"] not in LEVELS:
        raise _fail(where, f"level {raw['level']!r} must be one of {', '.join(LEVELS)}")
    since = str(raw["since"])
    if not _VERSION.match(since):
        raise _fail(where, f"since {since!r} is not a MAJOR.MINOR.PATCH version")
    also = _strings(raw.get("also"), where, "also")
    for name in also:
        if name not in STRUCTURAL:
            raise _fail(where, f"unknown structural matcher {name!r} in 'also'")
        if prefix != BUILTIN_PREFIX and name in BUILTIN_ONLY:
            raise _fail(where, f"structural matcher {name!r} belongs to a built-in rule")
    invalid, valid = _examples(raw["examples"], where)
    return Rule(
        code=code,
        name=str(raw["name"]),
        since=since,
        level=str(raw["level"]),
        summary=str(raw["summary"]).strip(),
        replacement=str(raw["replacement"]).strip(),
        rationale=" ".join(str(raw["rationale"]).split()),
        targets=_strings(raw.get("targets"), where, "targets"),
        calls=_strings(raw.get("calls"), where, "calls"),
        also=also,
        methods=_strings(raw.get("methods"), where, "methods"),
        cwe=_strings(raw.get("cwe"), where, "cwe"),
        owasp=_strings(raw.get("owasp"), where, "owasp"),
        invalid=invalid,
        valid=valid,
        origin=origin,
    )


def _load_yaml(text: str, source: str) -> Any:
    """The data of catalogue text, parsed once per text and user (``parsed_through_cache``:
    importing and running the YAML parser costs a one-file check a fifth of its time)."""
    from .cache import parsed_through_cache

    def parse(text: str) -> Any:
        import yaml  # the linter's dependency only; never imported by `import corral`

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
        try:
            return yaml.load(text, Loader=loader)
        except yaml.YAMLError as exc:
            raise _fail(source, f"not valid YAML: {exc}") from None
        except RecursionError:
            raise _fail(source, "not valid YAML: nested too deeply") from None

    return parsed_through_cache(f"catalogue-{CATALOGUE_CACHE_FORMAT}", text, parse)


def parse_catalogue(
    text: str, source: str = "rules.yaml", *, organisation: bool = False
) -> Catalogue:
    """Validate catalogue text; raise CatalogueError naming the problem and where.

    An organisation's catalogue has the same schema plus a top-level ``prefix``: the code
    prefix it reserves for its rules (``ACME`` for ``ACME101``), never the built-in ``CRL``.
    """
    data = _load_yaml(text, source)
    if not isinstance(data, dict):
        raise _fail(source, "the catalogue must be a mapping with 'version' and 'rules'")
    extra = set(data) - {"version", "rules", *(("prefix",) if organisation else ())}
    if extra:
        raise _fail(source, f"unknown top-level field {sorted(extra)[0]!r}")
    prefix = BUILTIN_PREFIX
    if organisation:
        prefix = str(data.get("prefix", ""))
        if not _PREFIX.match(prefix) or prefix == BUILTIN_PREFIX:
            raise _fail(
                source,
                f"prefix {prefix!r} must be 2-8 capital letters reserved for the organisation "
                f"(not {BUILTIN_PREFIX})",
            )
    version = str(data.get("version", ""))
    if not _VERSION.match(version):
        raise _fail(source, f"version {version!r} is not a MAJOR.MINOR.PATCH version")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list):
        raise _fail(source, "'rules' must be a list")
    rules: dict[str, Rule] = {}
    owner: dict[str, str] = {}  # target or method -> the rule that lists it
    for i, raw in enumerate(raw_rules):
        label = raw.get("code", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        rule = _rule(raw, f"{source}, rule {label}", prefix, source)
        if rule.code in rules:
            raise _fail(source, f"duplicate rule code {rule.code}")
        if parse_version(rule.since) > parse_version(version):
            raise _fail(
                f"{source}, rule {rule.code}",
                f"since {rule.since} is newer than catalogue version {version}",
            )
        for name in (*rule.targets, *rule.calls, *(f"method {m}" for m in rule.methods)):
            if owner.get(name, rule.code) != rule.code:
                raise _fail(
                    f"{source}, rule {rule.code}",
                    f"{name!r} is already listed by {owner[name]}: a name belongs to one rule",
                )
            owner[name] = rule.code
        rules[rule.code] = rule
    return Catalogue(version=version, rules=rules, source=source, prefix=prefix)


_cache: dict[str, Catalogue] = {}


def _builtin_text() -> str:
    """rules.yaml beside this module; through importlib.resources only when the package is
    not a directory of files (a zip), since importing that costs a one-file check 6 ms."""
    try:
        return Path(__file__).with_name("rules.yaml").read_text("utf-8")
    except OSError:  # pragma: no cover - a zipped package
        from importlib import resources

        return resources.files("corral.lint_rules").joinpath("rules.yaml").read_text("utf-8")


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load the shipped catalogue (or a given file), validated and cached per path."""
    if path is None:
        key = "<builtin>"
        if key not in _cache:
            text = _builtin_text()
            _cache[key] = parse_catalogue(text, "rules.yaml")
        return _cache[key]
    p = Path(path)
    key = str(p.resolve())
    if key not in _cache:
        from .safeio import MAX_CONFIG_BYTES, read_regular

        try:
            text = read_regular(p, MAX_CONFIG_BYTES).decode("utf-8")
        except OSError as exc:
            raise CatalogueError(f"{p}: cannot read catalogue: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise CatalogueError(f"{p}: cannot read catalogue: {exc}") from None
        _cache[key] = parse_catalogue(text, str(p))
    return _cache[key]
