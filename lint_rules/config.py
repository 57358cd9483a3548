"""``[tool.corral]`` in pyproject.toml: which rules are on, where they are allowed, what to skip.

Every key and rule code is validated, and a typo is an error that names the closest valid
spelling: a silently ignored ``selct = [...]`` would switch the policy off without anyone noticing.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalogue import Catalogue, parse_version
from .safeio import MAX_CONFIG_BYTES, read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

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
}
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


META_CODES = "CRL9"  # codes from here on report on the check itself, not on the code


class ConfigError(Exception):
    """The configuration is invalid; the message names the file, key and closest valid value."""


@dataclass
class Config:
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
                if not explicit and pin is not None and parse_version(rule.since) > pin:
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
        if not any(code < META_CODES for code in self.enabled_codes(catalogue)):
            raise ConfigError(
                f"{where}: no rule is enabled (select {self.select + self.extend_select}, "
                f"ignore {self.ignore}): the check would pass whatever the code does"
            )

    def fingerprint(self, catalogue: Catalogue) -> str:
        """Everything that changes findings for unchanged content: the cache key's config part."""
        payload = {
            "catalogue": catalogue.version,
            "rules": sorted(self.enabled_codes(catalogue)),
            "strict": self.strict,
            "source": catalogue.source,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


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


def load_config(path: Path | None, root: Path | None = None) -> Config:
    """Read ``[tool.corral]`` from ``path`` (a pyproject.toml); defaults when absent."""
    if path is None:
        return Config(root=(root or Path.cwd()).resolve())
    where = str(path)
    try:
        data = tomllib.loads(read_regular(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{where}: [tool] must be a table")
    section = tool.get("corral", {})
    where = f"{path} [tool.corral]"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a table")
    config = Config(root=path.parent.resolve(), source=where)
    for key, value in section.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        expected = KEYS[key]
        if not isinstance(value, expected):
            raise ConfigError(f"{where}: {key} must be a {expected.__name__}")
        attr = key.replace("-", "_")
        if key in ("select", "extend-select", "ignore", "exclude"):
            setattr(config, attr, _strings(value, where, key))
        elif key == "extend-exclude":
            config.exclude.extend(_strings(value, where, key))
        elif key == "cache-dir":
            assert isinstance(value, str)
            parts = Path(value).parts
            if not parts or Path(value).is_absolute() or ".." in parts:
                raise ConfigError(
                    f"{where}: cache-dir must be a relative path inside the project "
                    f"(no '..'), got {value!r}"
                )
            config.cache_dir = value
        elif key == "allow":
            assert isinstance(value, dict)
            config.allow = {
                str(code): _strings(globs, where, f"allow.{code}") for code, globs in value.items()
            }
        else:
            setattr(config, attr, value)
    return config
