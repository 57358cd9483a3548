"""The policy layer: settings shared through packs (``extends``), organisation rules, origins.

A platform team publishes its concurrency policy once, as a TOML file in an installed package
(a *pack*), and every repository says ``extends = "acme_policy"``. Resolution reads layers from
the most general to the most local (a pack's own ``extends`` first, then the pack, then the
next pack, then the project), so local settings override packs; lists and tables extend the
layers below unless the layer names the key in ``override``. Every value remembers the layer it
came from, which is what ``corral config --show-origin`` prints.

This module is the one place configuration is resolved: the CLI, the flake8 plugin and the
language server all reach it through ``project.load_project``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path, PurePosixPath

from .catalogue import Catalogue, CatalogueError, Rule, parse_catalogue
from .config import LIST_KEYS, TABLE_KEYS, Config, ConfigError, parse_table, read_table
from .digest import blake2b
from .findings import Finding
from .patterns import LazyPattern
from .records import Record, field
from .suppressions import Suppression

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "Layer",
    "Permissions",
    "load_layers",
    "resolve_config",
    "validate_permissions",
    "with_organisation_rules",
]

ENTRY_POINT_GROUP = "corral.policies"
DEFAULT_RESOURCE = "policy.toml"
PROJECT_ONLY = ("baseline", "cache-dir")  # where a project keeps its own files
_PACKAGE = LazyPattern(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*$")


class Layer(Record, frozen=True):
    """One table of settings and where it came from."""

    origin: str  # "file:pyproject.toml" or "pack:acme_policy", as --show-origin prints it
    where: str  # for error messages
    path: Path  # the file itself
    values: dict[str, Any]
    digest: str = ""  # content hash of a pack's file ("" for the project's own file)
    pack: dict[str, str] | None = None  # name, version, source of a pack


class _Loader(Record):
    """Follows ``extends`` depth first, each file once, refusing cycles."""

    layers: list[Layer] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)
    stack: list[tuple[Path, str]] = field(default_factory=list)

    def load(self, path: Path, origin: str, where: str, pack: dict[str, str] | None) -> None:
        real = path.resolve()
        if any(real == p for p, _ in self.stack):
            chain = " -> ".join([label for _, label in self.stack] + [origin])
            raise ConfigError(f"{where}: extends cycle: {chain}")
        if real in self.seen:
            return  # a pack reached twice (a diamond) is applied once, at its first place
        data = read_table(path) if pack is None else _read_pack(path, origin)
        values = parse_table(data, where)
        if pack is not None:
            for key in PROJECT_ONLY:
                if key in values:
                    raise ConfigError(f"{where}: {key} is a project setting, not a pack's")
        self.stack.append((real, origin))
        for spec in values.pop("extends", []):
            target, label, info = locate_pack(spec, path.parent, where)
            self.load(target, label, f"{label} ({target})", info)
        self.stack.pop()
        self.seen.add(real)
        digest = ""
        if pack is not None:
            import hashlib  # a pack's published SHA-256; hashlib loads OpenSSL, so only here

            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            pack = {**pack, "sha256": digest[:16]}
        self.layers.append(Layer(origin, where, path, values, digest, pack))


def _read_pack(path: Path, origin: str) -> dict[str, Any]:
    try:
        return read_table(path)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def load_layers(path: Path) -> list[Layer]:
    """Every layer behind ``path`` (a pyproject.toml or policy file), most general first."""
    loader = _Loader()
    where = f"{path} [tool.corral]" if path.name == "pyproject.toml" else str(path)
    loader.load(path, f"file:{path}", where, None)
    return loader.layers


def locate_pack(spec: str, base: Path, where: str) -> tuple[Path, str, dict[str, str]]:
    """Where ``extends = spec`` points: (file, origin label, pack info).

    ``"../policy.toml"`` is a file relative to the declaring file; ``"pkg:dir/policy.toml"`` a
    file inside an installed package; a bare name is an entry point in ``corral.policies``
    (``name = "package:policy.toml"``) or else an installed package with a ``policy.toml``.
    """
    label = f"pack:{spec}"
    head, sep, resource = spec.partition(":")
    if sep and _PACKAGE.match(head):
        path = _package_file(head, resource, spec, where)
        return path, label, _pack_info(spec, head, None, path)
    if spec.endswith(".toml") or "/" in spec or spec.startswith("."):
        path = (base / spec).resolve()
        if not path.is_file():
            raise ConfigError(f"{where}: pack {spec!r}: no such file {path}")
        return path, f"file:{path}", {"name": spec, "version": "", "source": str(path)}
    if not _PACKAGE.match(spec):
        raise ConfigError(f"{where}: pack {spec!r}: not a file, a package or an entry point name")
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if found:
        ep = found[0]
        module, _, attr = ep.value.partition(":")
        path = _package_file(module.strip(), attr.strip() or DEFAULT_RESOURCE, spec, where)
        dist = ep.dist
        return path, label, _pack_info(spec, module.strip(), dist.version if dist else "", path)
    path = _package_file(spec, DEFAULT_RESOURCE, spec, where)
    return path, label, _pack_info(spec, spec, None, path)


def _package_file(package: str, resource: str, spec: str, where: str) -> Path:
    """A file inside an installed package, found without running the package's code."""
    parts = PurePosixPath(resource).parts
    if not resource or PurePosixPath(resource).is_absolute() or ".." in parts:
        raise ConfigError(f"{where}: pack {spec!r}: {resource!r} is not a path inside the package")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{where}: pack {spec!r}: cannot find package {package}: {exc}") from None
    if found is None:
        raise ConfigError(
            f"{where}: pack {spec!r} is not installed (no {ENTRY_POINT_GROUP} entry point "
            f"and no package {package!r})"
        )
    locations = list(found.submodule_search_locations or [])
    if not locations:
        raise ConfigError(f"{where}: pack {spec!r}: {package} is a module, not a package")
    for location in locations:
        candidate = Path(location, *parts)
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{where}: pack {spec!r}: {package} has no file {resource}")


def _pack_info(spec: str, package: str, version: str | None, path: Path) -> dict[str, str]:
    if version is None:
        from importlib.metadata import PackageNotFoundError, packages_distributions
        from importlib.metadata import version as dist_version

        version = ""
        for dist in packages_distributions().get(package.split(".")[0], []):
            try:
                version = dist_version(dist)
            except PackageNotFoundError:  # pragma: no cover - metadata removed meanwhile
                continue
            break
    return {"name": spec, "version": version, "source": str(path)}


# -- merging ---------------------------------------------------------------------------------
_ATTRS = {"allow": "allow", "allowed-importers": "allowed_importers"}


def resolve_config(path: Path | None, root: Path | None = None) -> Config:
    """The effective configuration for the project whose pyproject.toml is ``path``."""
    if path is None:
        config = Config(root=(root or Path.cwd()).resolve())
        _record_defaults(config, set())
        return config
    layers = load_layers(path)
    config = Config(root=path.parent.resolve(), source=layers[-1].where)
    merged = _merge(layers, config)
    organisation = [_organisation_catalogue(f, layer) for f, layer in merged["rule-files"]]
    config.organisation = organisation
    if "select" not in merged["set"]:
        config.select = [*config.select, *(c.prefix for c in organisation)]
    _record_defaults(config, merged["set"])
    digest = blake2b(digest_size=8)
    for layer in layers:
        digest.update(f"{layer.origin}\0{layer.digest}\0".encode())
    for catalogue in organisation:
        digest.update(catalogue.source.encode() + b"\0" + repr(sorted(catalogue.rules)).encode())
        digest.update(repr(list(catalogue)).encode())
    config.policy_digest = digest.hexdigest()
    config.packs = [layer.pack for layer in layers if layer.pack is not None]
    config.policy_files = [str(layer.path) for layer in layers[:-1]]
    return config


def _merge(layers: list[Layer], config: Config) -> dict[str, Any]:
    """Apply ``layers`` onto ``config`` in order; record origins; return the rule files."""
    touched: set[str] = set()
    rule_files: list[tuple[Path, Layer]] = []
    origins = config.origins
    for layer in layers:
        override = set(layer.values.get("override", []))
        for key, value in layer.values.items():
            if key == "override":
                continue
            if key == "rule-files":
                rule_files.extend(((layer.path.parent / v).resolve(), layer) for v in value)
                origins.setdefault(key, []).append((layer.origin, value))
                continue
            if key == "extend-exclude":
                if "exclude" not in origins:
                    origins["exclude"] = [("default", list(config.exclude))]
                config.exclude = _extend(config.exclude, value)
                origins["exclude"].append((layer.origin, value))
                continue
            attr = key.replace("-", "_")
            replace = key in override or key not in touched
            if key in TABLE_KEYS:
                _merge_table(config, layer, key, value, replace)
            elif key in LIST_KEYS:
                current = [] if replace else getattr(config, attr)
                setattr(config, attr, _extend(current, value))
                entry = (layer.origin, value)
                origins[key] = [entry] if replace else [*origins.get(key, []), entry]
            else:
                if key == "catalogue":
                    value = str((layer.path.parent / value).resolve())
                setattr(config, attr, value)
                origins[key] = [(layer.origin, value)]
            touched.add(key)
    targets = {k: v for k, v in config.allow.items() if "." in k}
    config.allow = {k: v for k, v in config.allow.items() if "." not in k}
    config.allow_targets = targets
    config.rule_files = [str(p) for p, _ in rule_files]
    return {"rule-files": rule_files, "set": touched}


def _merge_table(config: Config, layer: Layer, key: str, value: Any, replace: bool) -> None:
    attr = _ATTRS[key]
    table: dict[str, list[str]] = {} if replace else dict(getattr(config, attr))
    for name, items in value.items():
        table[name] = _extend(table.get(name, []), items)
        origin_key = f"{key}.{name}"
        previous = [] if replace else config.origins.get(origin_key, [])
        config.origins[origin_key] = [*previous, (layer.origin, items)]
    if replace:
        for stale in [k for k in config.origins if k.startswith(f"{key}.")]:
            if stale.split(".", 1)[1] not in value:
                del config.origins[stale]
    setattr(config, attr, table)


def _extend(current: list[str], more: list[str]) -> list[str]:
    return [*current, *(v for v in more if v not in current)]


_SHOWN = (
    "rules-version",
    "select",
    "extend-select",
    "ignore",
    "strict",
    "exclude",
    "respect-gitignore",
    "baseline",
    "cache-dir",
    "catalogue",
    "no-suppress",
    "rule-files",
)


def _record_defaults(config: Config, touched: set[str]) -> None:
    for key in _SHOWN:
        if key not in config.origins:
            value = getattr(config, key.replace("-", "_"))
            config.origins[key] = [("default", value)]


# -- organisation rules ----------------------------------------------------------------------
def _organisation_catalogue(path: Path, layer: Layer) -> Catalogue:
    label = layer.origin
    from .safeio import MAX_CONFIG_BYTES, read_regular

    try:
        text = read_regular(path, MAX_CONFIG_BYTES).decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{label}: rule-files: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: rule-files: cannot read {path}: {exc}") from None
    try:
        return parse_catalogue(text, str(path), organisation=True)
    except CatalogueError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def with_organisation_rules(builtin: Catalogue, organisation: list[Catalogue]) -> Catalogue:
    """One catalogue holding the built-in rules and the organisation's, conflicts refused.

    A code, a target or a loop method claimed by two rules is an error naming both: the
    resolver maps each name to exactly one rule, so a silent winner would hide the other.
    """
    if not organisation:
        return builtin
    rules: dict[str, Rule] = dict(builtin.rules)
    owner: dict[str, Rule] = {}
    for rule in builtin:
        for target in (*rule.targets, *rule.calls):
            owner.setdefault(target, rule)
        for method in rule.methods:
            owner.setdefault(f"loop.{method}", rule)
    for catalogue in organisation:
        for rule in catalogue:
            if rule.code in rules:
                other = rules[rule.code]
                raise ConfigError(
                    f"{rule.origin}: rule {rule.code} is also declared in {other.origin}"
                )
            for name in (*rule.targets, *rule.calls, *(f"loop.{m}" for m in rule.methods)):
                taken = owner.get(name)
                if taken is not None:
                    raise ConfigError(
                        f"{rule.origin}, rule {rule.code}: target {name} is already listed by "
                        f"{taken.code} ({taken.origin})"
                    )
                owner[name] = rule
            rules[rule.code] = rule
    return Catalogue(builtin.version, rules, builtin.source, builtin.prefix)


# -- showing the effective configuration -----------------------------------------------------
def _shown_origin(origin: str, cwd: Path) -> str:
    kind, _, where = origin.partition(":")
    if kind == "file":
        try:
            return f"file:{Path(where).relative_to(cwd).as_posix()}"
        except ValueError:
            return origin
    return origin


def render_config(config: Config, *, show_origin: bool, cwd: Path) -> str:
    """``key = value`` lines (TOML), each prefixed with its origin when asked, as git does.

    A list or table entry built up by several layers is one line per layer: ``=`` for the
    layer that set it, ``+=`` for each layer that extended it.
    """
    import json

    lines: list[str] = []
    for key in sorted(config.origins):
        table, dot, name = key.partition(".")
        shown = f"{table}.{json.dumps(name)}" if dot and "." in name else key
        for i, (origin, value) in enumerate(config.origins[key]):
            if value is None:
                continue  # unset: TOML has no null
            op = "+=" if i else "="
            prefix = f"{_shown_origin(origin, cwd)}\t" if show_origin else ""
            lines.append(f"{prefix}{shown} {op} {json.dumps(value)}")
    for pack in config.packs:
        version = f" {pack['version']}" if pack["version"] else ""
        source = f" {pack['source']}" if pack["source"] != pack["name"] else ""
        lines.append(f"# pack {pack['name']}{version}{source} sha256:{pack['sha256']}")
    return "\n".join(lines) + "\n"


# -- what the audit reports about the policy -------------------------------------------------
def policy_report(config: Config) -> dict[str, Any]:
    """The packs a project extends (name, version, digest) and the organisation rules."""
    return {
        "packs": [dict(pack) for pack in config.packs],
        "organisation_rules": [
            {
                "prefix": org.prefix,
                "version": org.version,
                "source": org.source,
                "rules": sorted(org.rules),
            }
            for org in config.organisation
        ],
        "no_suppress": sorted(config.no_suppress),
        "allow_targets": dict(sorted(config.allow_targets.items())),
        "allowed_importers": dict(sorted(config.allowed_importers.items())),
    }


def suppression_governance(sup: Suppression, today: str) -> dict[str, str]:
    """Owner, expiry and status of one suppression, as the audit lists it."""
    lapsed = sup.lapsed(today)
    status = "active" if lapsed is None else ("expired" if lapsed == "expired" else "invalid until")
    return {"owner": sup.owner, "until": sup.until, "status": status}


# -- scoped permission -----------------------------------------------------------------------
class Permissions:
    """Exceptions scoped to one banned name: per-target ``allow`` globs (this target, in these
    paths) and ``allowed-importers`` (this target, from these modules only).

    Judged after the cache, like the per-rule globs: they depend on where a file is, not on
    what it contains. They read the finding's qualified name, never its message.
    """

    def __init__(self, config: Config) -> None:
        from .discovery import PathMatcher

        self.targets = [(name, PathMatcher(globs)) for name, globs in config.allow_targets.items()]
        self.importers = [(name, tuple(mods)) for name, mods in config.allowed_importers.items()]
        self._modules: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.targets or self.importers)

    def allows(self, finding: Finding, relpath: str) -> bool:
        qualname = finding.qualname
        if not qualname:
            return False
        for name, matcher in self.targets:
            if _covers(name, qualname) and matcher.matches(relpath):
                return True
        if self.importers:
            module = self.module_of(finding.path)
            for name, modules in self.importers:
                if _covers(name, qualname) and any(_covers(m, module) for m in modules):
                    return True
        return False

    def module_of(self, path: str) -> str:
        """The dotted module name of a file, from the ``__init__.py`` files above it."""
        known = self._modules.get(path)
        if known is None:
            from .packages import package_of

            stem = Path(path).stem
            package = package_of(path)
            if package is None:
                known = stem
            else:
                known = package if stem == "__init__" else f"{package}.{stem}"
            self._modules[path] = known
        return known


def _covers(name: str, qualname: str) -> bool:
    """``concurrent.futures`` covers itself and everything below it, nothing else."""
    return qualname == name or qualname.startswith(name + ".")


def validate_permissions(config: Config, catalogue: Catalogue) -> None:
    """A scoped permission must name a banned target (or a module holding some) and, for
    ``allowed-importers``, dotted module names: a typo would grant nothing, silently."""
    if not config.allow_targets and not config.allowed_importers:
        return
    from .ruleset import LOOP_QUALNAME

    names = [t for r in catalogue for t in (*r.targets, *r.calls)]
    names += [f"{LOOP_QUALNAME}.{m}" for r in catalogue for m in r.methods]
    exact = sorted(t for t in names if not t.endswith("*"))
    wildcards = [t[:-1] for t in names if t.endswith("*")]
    where = config.source or "configuration"
    tables = (("allow", config.allow_targets), ("allowed-importers", config.allowed_importers))
    for key, table in tables:
        for name in table:
            banned = any(_covers(name, t) for t in exact) or any(
                name.startswith(w) for w in wildcards
            )
            if not banned:
                import difflib  # for the hint only

                targets = exact
                close = difflib.get_close_matches(name, targets, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}: {key}: {name!r} is not a banned target{hint}")
    for name, modules in config.allowed_importers.items():
        for module in modules:
            if not _PACKAGE.match(module):
                raise ConfigError(
                    f"{where}: allowed-importers.{name}: {module!r} is not a dotted module name"
                )
