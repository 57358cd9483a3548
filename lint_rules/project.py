"""Everything ``corral check`` needs to know about a project, loaded and validated once.

Shared by the CLI and the flake8 plugin so both see the same rules, pin and allow-lists.
"""

from __future__ import annotations

import os
from pathlib import Path

from .catalogue import Catalogue, load_catalogue
from .config import Config, find_config, load_config
from .discovery import PathMatcher, relative_to
from .findings import Finding
from .policy import Permissions, validate_permissions, with_organisation_rules
from .records import Record, field
from .ruleset import RuleSet
from .suppressions import today

__all__ = [
    "DEFAULT_BASELINE",
    "Project",
    "Selection",
    "baseline_path",
    "load_project",
    "load_selected",
]


DEFAULT_BASELINE = ".corral-baseline.json"


class Project(Record):
    config: Config
    catalogue: Catalogue
    rules: RuleSet
    allow: dict[str, PathMatcher]
    permissions: Permissions | None = None

    def relative(self, path: Path) -> str:
        """Path relative to the project root (for allow globs), posix style."""
        real = os.path.realpath(path)
        rel = relative_to(real, os.path.realpath(self.config.root))
        return rel if rel is not None else path.as_posix()

    def allowed(self, finding: Finding, relpath: str) -> bool:
        """True if a per-rule ``allow`` glob, or a permission scoped to the finding's target
        (``allow`` for one name, ``allowed-importers``), exempts it."""
        for selector, matcher in self.allow.items():
            if finding.code.startswith(selector) and matcher.matches(relpath):
                return True
        scoped = self.permissions
        return scoped is not None and bool(scoped) and scoped.allows(finding, relpath)


def load_project(
    config_path: Path | None = None,
    *,
    start: Path | None = None,
    overrides: dict[str, object] | None = None,
) -> Project:
    """Find and validate configuration and catalogue; raise ConfigError/CatalogueError."""
    if config_path is None:
        config_path = find_config(start or Path.cwd())
    config = load_config(config_path, root=start)
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(config, key, value)
            config.origins[key.replace("_", "-")] = [("command line", value)]
    catalogue_path = None
    if config.catalogue:
        catalogue_path = (config.root / config.catalogue).resolve()
    catalogue = with_organisation_rules(load_catalogue(catalogue_path), config.organisation)
    config.validate_codes(catalogue)
    rules = RuleSet.build(
        catalogue,
        config.enabled_codes(catalogue),
        no_suppress=config.no_suppress,
        today=today(),
    )
    where = config.source or "configuration"
    PathMatcher(config.exclude, f"{where}: exclude")  # a bad pattern fails here, not later
    allow = {code: PathMatcher(g, f"{where}: allow.{code}") for code, g in config.allow.items()}
    validate_permissions(config, catalogue)
    return Project(config, catalogue, rules, allow, Permissions(config))


class Selection(Record, frozen=True):
    """Rule selection given on top of the file: ``corral check --select ...`` or editor settings."""

    select: list[str] | None = None
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] | None = None
    strict: bool | None = None


def load_selected(
    config_path: Path | None, selection: Selection, *, start: Path | None = None
) -> Project:
    """``load_project`` with a selection applied the way the command line applies it."""
    overrides: dict[str, object] = {
        "select": selection.select,
        # as in ruff, a command-line selection replaces the configured one, ignores included
        "ignore": selection.ignore
        if selection.ignore is not None or selection.select is None
        else [],
        "strict": selection.strict,
    }
    project = load_project(config_path, start=start, overrides=overrides)
    if selection.extend_select:
        extended = [*project.config.extend_select, *selection.extend_select]
        project = load_project(
            config_path, start=start, overrides={**overrides, "extend_select": extended}
        )
    return project


def baseline_path(project: Project, override: Path | None = None) -> Path:
    """``--baseline`` if given, else ``baseline`` from ``[tool.corral]``, else the default."""
    if override is not None:
        return override
    return project.config.root / (project.config.baseline or DEFAULT_BASELINE)
