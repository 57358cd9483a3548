"""The project-wide subclass index for the entry points that check one file.

``corral check`` over a tree builds the index as it goes (runner.py). The flake8 plugin,
``--stdin-filename`` and ``corral server`` check one file, so they ask for the index of the
project that file belongs to: a check of the project's tree (the files ``corral check`` run
at the project root walks) through the same results cache. The first call on a cold cache
parses what such a ``corral check`` would, once; every later call, in any process, is warm:
one stat per file and a cache read, and only files changed since are read again. Without a
pyproject.toml there is no project, and no index (a stray file never makes the linter walk
whatever directory it sits in).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .cache import ResultCache
from .discovery import iter_python_files
from .imports_scan import imported_modules
from .packages import package_of
from .project import Project
from .runner import check_files, reachable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resolver import SubclassIndex

__all__ = ["index_for_file", "project_index", "results_cache"]


def results_cache(project: Project, *, use_cache: bool = True) -> ResultCache:
    """The project's results cache (``use_cache=False``: one that reads and writes nothing)."""
    cache_dir = project.config.root / project.config.cache_dir if use_cache else None
    fingerprint = project.config.fingerprint(project.catalogue)
    return ResultCache(cache_dir, fingerprint, root=project.config.root, today=project.rules.today)


def project_index(
    project: Project, *, use_cache: bool = True, jobs: int | None = None
) -> SubclassIndex:
    """Every module of the project defining subclasses of banned classes, with them.

    ``jobs=1`` checks in this process (flake8 runs plugins in daemonic workers, which may
    not start processes of their own; the server is threaded)."""
    if project.config.source is None or not project.rules.subclass_codes:
        return {}
    files = [(str(p), p) for p in iter_python_files([project.config.root], project.config)]
    cache = results_cache(project, use_cache=use_cache)
    strict = project.config.strict
    return check_files(files, project.rules, cache, strict=strict, jobs=jobs).index


def index_for_file(index: SubclassIndex, path: Path, source: bytes | str) -> SubclassIndex:
    """The part of ``index`` the file at ``path`` (its bytes or decoded text) can reach through
    its imports (empty for most files, which then skip the parse the prefilter rules out)."""
    if not index:
        return {}
    return reachable(index, imported_modules(source), partial(package_of, str(path)))
