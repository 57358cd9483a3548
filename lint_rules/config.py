"""``[tool.corral]`` in pyproject.toml: which rules are on, where they are allowed, what to skip.

Every key and rule code is validated, and a typo is an error that names the closest valid
spelling: a silently ignored ``selct = [...]`` would switch the policy off without anyone noticing.
"""

from __future__ import annotations

from pathlib import Path

from .catalogue import Catalogue, parse_version
from .digest import hexdigest
from .records import Record, field
from .safeio import MAX_CONFIG_BYTES, read_regular

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Config", "ConfigError", "find_config", "load_config"]

KEYS = {
    "rules-version": str,
    "select": list,
    "extend-select": list,
    "ignore": list,
    "strict": bool,
    "exclude": list,
    "extend-exclude": list,
    "allow": dict,
    "baseline": str,
    "respect-gitignore": bool,
    "cache-dir": str,
    "catalogue": str,
    # the policy layer (policy.py): packs, organisation rules, scoped permission, governance
    "extends": list,
    "override": list,
    "rule-files": list,
    "no-suppress": list,
    "allowed-importers": dict,
}
LIST_KEYS: tuple[str, ...] = ("select", "extend-select", "ignore", "exclude", "extend-exclude")
LIST_KEYS += ("no-suppress", "extends", "override", "rule-files")
TABLE_KEYS = ("allow", "allowed-importers")
DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    "node_modules",
    "build",
    "dist",
    ".eggs",
    "*.egg-info",
    "site-packages",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".corral_cache",
)


TOML_CACHE_FORMAT = 1  # parsed TOML in the user cache (cache.parsed_through_cache)
META_CODES = "CRL9"  # codes from here on report on the check itself, not on the code


class ConfigError(Exception):
    """The configuration is invalid; the message names the file, key and closest valid value."""


class Config(Record):
    root: Path
    source: str | None = None
    rules_version: str | None = None
    select: list[str] = field(default_factory=lambda: ["CRL"])
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    strict: bool = False
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    allow: dict[str, list[str]] = field(default_factory=dict)
    baseline: str | None = None
    respect_gitignore: bool = True
    cache_dir: str = ".corral_cache"
    catalogue: str | None = None
    no_suppress: list[str] = field(default_factory=list)
    # allow globs for one qualified name (a dotted key in [tool.corral.allow])
    allow_targets: dict[str, list[str]] = field(default_factory=dict)
    allowed_importers: dict[str, list[str]] = field(default_factory=dict)
    rule_files: list[str] = field(default_factory=list)  # absolute paths, from any layer
    organisation: list[Catalogue] = field(default_factory=list)  # parsed from rule_files
    # filled by policy.resolve_config: what the packs contributed and where each value came from
    packs: list[dict[str, str]] = field(default_factory=list)
    origins: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    policy_digest: str = ""
    policy_files: list[str] = field(default_factory=list)  # every pack file read (for reloads)

    def enabled_codes(self, catalogue: Catalogue) -> frozenset[str]:
        """Resolve select/extend-select/ignore, the strict level and the rules-version pin.

        A family prefix ("CRL2") enables the rules in it that are in force: default level (or
        strict when ``strict = true``) and not newer than the pin. Naming a code exactly enables
        it regardless, which is how a project opts in to one strict or newer rule.
        """
        pin = parse_version(self.rules_version) if self.rules_version else None
        chosen: set[str] = set()
        for selector in [*self.select, *self.extend_select]:
            for rule in catalogue:
                if not rule.code.startswith(selector):
                    continue
                explicit = selector == rule.code
                if not explicit and rule.strict and not self.strict:
                    continue
                # the pin is the built-in catalogue's; an organisation versions its own rules
                builtin = rule.code.startswith(catalogue.prefix)
                if not explicit and builtin and pin is not None and parse_version(rule.since) > pin:
                    continue
                chosen.add(rule.code)
        for selector in self.ignore:
            chosen = {c for c in chosen if not c.startswith(selector)}
        return frozenset(chosen)

    def validate_codes(self, catalogue: Catalogue) -> None:
        """Every selector must name at least one rule; report the closest match otherwise."""
        where = self.source or "configuration"
        lists = {"select": self.select, "extend-select": self.extend_select, "ignore": self.ignore}
        lists["allow"] = list(self.allow)
        lists["no-suppress"] = self.no_suppress
        for key, selectors in lists.items():
            for selector in selectors:
                if not selector.strip():
                    # "" is a prefix of every code: it would select or ignore everything
                    raise ConfigError(f"{where}: empty rule selector {selector!r} in {key}")
                if not any(rule.code.startswith(selector) for rule in catalogue):
                    near = catalogue.nearest(selector)
                    hint = f" (did you mean {near}?)" if near else ""
                    raise ConfigError(f"{where}: unknown rule code {selector!r} in {key}{hint}")
        if self.rules_version:
            try:
                parse_version(self.rules_version)
            except ValueError as exc:
                raise ConfigError(f"{where}: rules-version: {exc}") from None
            if parse_version(self.rules_version)[:2] > parse_version(catalogue.version)[:2]:
                raise ConfigError(
                    f"{where}: rules-version {self.rules_version} is newer than the installed "
                    f"catalogue {catalogue.version}: upgrade corral"
                )
        if not self.select and not self.extend_select:
            raise ConfigError(f"{where}: select is empty, so no rule would be checked")
        if all(code.startswith(META_CODES) for code in self.enabled_codes(catalogue)):
            raise ConfigError(
                f"{where}: no rule is enabled (select {self.select + self.extend_select}, "
                f"ignore {self.ignore}): the check would pass whatever the code does"
            )

    def fingerprint(self, catalogue: Catalogue) -> str:
        """Everything that changes findings for unchanged content: the cache key's config part.

        The policy digest covers every pack's and organisation catalogue's content. The date
        is not part of it (a suppression's ``until=`` is: the cache marks those entries dated).
        """
        payload = {
            "catalogue": catalogue.version,
            "rules": sorted(self.enabled_codes(catalogue)),
            "strict": self.strict,
            "source": catalogue.source,
            "policy": self.policy_digest,
            "no-suppress": sorted(self.no_suppress),
        }
        return hexdigest(repr(payload).encode(), 8)  # str, bool and lists of str: a stable repr


def package_version() -> str:
    """The installed distribution's version (without importing the runtime package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corral")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def find_config(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _strings(value: Any, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return list(value)


def read_table(path: Path) -> dict[str, Any]:
    """The ``[tool.corral]`` table of a pyproject.toml, or the whole of any other TOML file
    (a policy pack's ``policy.toml``)."""
    where = str(path)
    try:
        text = read_regular(path, MAX_CONFIG_BYTES).decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from None

    def parse(text: str) -> dict[str, Any]:
        import tomllib  # with the datetime it needs, a tenth of a one-file check

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: invalid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None

    from .cache import parsed_through_cache

    data = parsed_through_cache(f"toml-{TOML_CACHE_FORMAT}", text, parse)
    if not isinstance(data, dict):  # a cache entry is data, not necessarily a table
        data = parse(text)
    if path.name != "pyproject.toml":
        return dict(data)
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{where}: [tool] must be a table")
    section = tool.get("corral", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where} [tool.corral]: must be a table")
    return dict(section)


def parse_table(section: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate one table of settings (the project's or a pack's): dashed key -> value."""
    parsed: dict[str, Any] = {}
    for key, value in section.items():
        if key not in KEYS:
            import difflib  # only for the message: a clean run never imports it

            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        if key == "extends" and isinstance(value, str):
            value = [value]
        expected = KEYS[key]
        if not isinstance(value, expected):
            raise ConfigError(f"{where}: {key} must be a {expected.__name__}")
        if key in LIST_KEYS:
            parsed[key] = _strings(value, where, key)
        elif key == "cache-dir":
            assert isinstance(value, str)
            parts = Path(value).parts
            if not parts or Path(value).is_absolute() or ".." in parts:
                raise ConfigError(
                    f"{where}: cache-dir must be a relative path inside the project "
                    f"(no '..'), got {value!r}"
                )
            parsed[key] = value
        elif key in TABLE_KEYS:
            assert isinstance(value, dict)
            parsed[key] = {
                str(name): _strings(globs, where, f"{key}.{name}") for name, globs in value.items()
            }
        else:
            parsed[key] = value
    return parsed


def load_config(path: Path | None, root: Path | None = None) -> Config:
    """Read ``[tool.corral]`` from ``path`` (a pyproject.toml), following ``extends``."""
    from .policy import resolve_config

    return resolve_config(path, root)
