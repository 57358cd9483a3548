"""Load and validate rules.yaml, the versioned rule catalogue.

The catalogue is the single source of truth for codes, docs and examples, so a broken catalogue
must fail loudly at load time with the field and rule it concerns, never half-load.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Catalogue", "CatalogueError", "Example", "Rule", "load_catalogue", "parse_version"]

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_CODE = re.compile(r"^CRL\d{3}$")
_EXPECT = re.compile(r"^(\d+):(\d+) (CRL\d{3})$")
LEVELS = ("default", "strict")
STRUCTURAL = ("subclass-instantiation", "gather-comprehension", "dynamic-lookup")
RULE_FIELDS = {
    "code",
    "name",
    "since",
    "level",
    "summary",
    "targets",
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


@dataclass(frozen=True)
class Example:
    code: str
    expect: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    since: str
    level: str
    summary: str
    replacement: str
    rationale: str
    targets: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    cwe: tuple[str, ...] = ()
    owasp: tuple[str, ...] = ()
    invalid: tuple[Example, ...] = ()
    valid: tuple[Example, ...] = ()

    @property
    def strict(self) -> bool:
        return self.level == "strict"


@dataclass(frozen=True)
class Catalogue:
    version: str
    rules: dict[str, Rule] = field(default_factory=dict)
    source: str = "rules.yaml"

    def __iter__(self) -> Any:
        return iter(self.rules.values())

    def get(self, code: str) -> Rule | None:
        return self.rules.get(code)

    def nearest(self, code: str) -> str | None:
        """The closest known code or rule name, for 'did you mean' messages."""
        names = list(self.rules) + [r.name for r in self.rules.values()]
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


def _examples(raw: Any, where: str) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    if not isinstance(raw, dict) or set(raw) - {"invalid", "valid"}:
        raise _fail(where, "field 'examples' must be a mapping with keys 'invalid' and 'valid'")
    invalid: list[Example] = []
    for i, item in enumerate(raw.get("invalid") or []):
        at = f"{where}, examples.invalid[{i}]"
        if not isinstance(item, dict) or set(item) != {"code", "expect"}:
            raise _fail(at, "an invalid example is a mapping with 'code' and 'expect'")
        expect = []
        for entry in _strings(item["expect"], at, "expect"):
            m = _EXPECT.match(entry)
            if not m:
                raise _fail(at, f"expectation {entry!r} is not 'LINE:COL CODE'")
            expect.append((int(m[1]), int(m[2]), m[3]))
        invalid.append(Example(str(item["code"]), tuple(sorted(expect))))
    valid: list[Example] = []
    for i, item in enumerate(raw.get("valid") or []):
        at = f"{where}, examples.valid[{i}]"
        if not isinstance(item, dict) or set(item) != {"code"}:
            raise _fail(at, "a valid example is a mapping with only 'code'")
        valid.append(Example(str(item["code"])))
    return tuple(invalid), tuple(valid)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "each rule must be a mapping")
    unknown = set(raw) - RULE_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        close = difflib.get_close_matches(name, sorted(RULE_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(where, f"unknown field {name!r}{hint}")
    for name in REQUIRED:
        if name not in raw or raw[name] in (None, ""):
            raise _fail(where, f"missing required field {name!r}")
    code = str(raw["code"])
    if not _CODE.match(code):
        raise _fail(where, f"code {code!r} is not of the form CRLnnn")
    if raw["level"] not in LEVELS:
        raise _fail(where, f"level {raw['level']!r} must be one of {', '.join(LEVELS)}")
    since = str(raw["since"])
    if not _VERSION.match(since):
        raise _fail(where, f"since {since!r} is not a MAJOR.MINOR.PATCH version")
    also = _strings(raw.get("also"), where, "also")
    for name in also:
        if name not in STRUCTURAL:
            raise _fail(where, f"unknown structural matcher {name!r} in 'also'")
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
        also=also,
        methods=_strings(raw.get("methods"), where, "methods"),
        cwe=_strings(raw.get("cwe"), where, "cwe"),
        owasp=_strings(raw.get("owasp"), where, "owasp"),
        invalid=invalid,
        valid=valid,
    )


def parse_catalogue(text: str, source: str = "rules.yaml") -> Catalogue:
    """Validate catalogue text; raise CatalogueError naming the problem and where."""
    import yaml  # the linter's dependency only; never imported by `import corral`

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise _fail(source, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise _fail(source, "not valid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise _fail(source, "the catalogue must be a mapping with 'version' and 'rules'")
    extra = set(data) - {"version", "rules"}
    if extra:
        raise _fail(source, f"unknown top-level field {sorted(extra)[0]!r}")
    version = str(data.get("version", ""))
    if not _VERSION.match(version):
        raise _fail(source, f"version {version!r} is not a MAJOR.MINOR.PATCH version")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list):
        raise _fail(source, "'rules' must be a list")
    rules: dict[str, Rule] = {}
    for i, raw in enumerate(raw_rules):
        label = raw.get("code", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        rule = _rule(raw, f"{source}, rule {label}")
        if rule.code in rules:
            raise _fail(source, f"duplicate rule code {rule.code}")
        if parse_version(rule.since) > parse_version(version):
            raise _fail(
                f"{source}, rule {rule.code}",
                f"since {rule.since} is newer than catalogue version {version}",
            )
        rules[rule.code] = rule
    return Catalogue(version=version, rules=rules, source=source)


_cache: dict[str, Catalogue] = {}


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load the shipped catalogue (or a given file), validated and cached per path."""
    if path is None:
        key = "<builtin>"
        if key not in _cache:
            text = resources.files("corral.lint_rules").joinpath("rules.yaml").read_text("utf-8")
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
