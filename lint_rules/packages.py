"""Which dotted package a file belongs to, and what a relative import names from there:
needed by the prefilter, the resolver and the project-wide subclass index alike."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["absolute_module", "module_name", "package_of"]


def package_of(path: str) -> str | None:
    """The dotted package a file belongs to, from the ``__init__.py`` files above it."""
    file = Path(path)
    parts: list[str] = []
    directory = file.parent
    while (directory / "__init__.py").is_file():
        parts.append(directory.name)
        if directory.parent == directory:
            break
        directory = directory.parent
    if not parts:
        return None
    return ".".join(reversed(parts))


def absolute_module(level: int, module: str | None, package: str | None) -> str | None:
    """The module ``from <level dots><module> import ...`` reads in ``package``: ``from .tasks
    import x`` inside package ``asyncio`` reads ``asyncio.tasks``. None when the dots climb
    above the top package, or a relative import stands outside any package."""
    if not level:
        return module
    if package is None:
        return None
    parts = package.split(".")
    if level - 1 >= len(parts):
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def module_name(path: Path | str, package: str | None) -> str:
    """The dotted module a file is, given its package (``package_of``)."""
    name = os.path.basename(path)
    stem = name[: -len(".py")] if name.endswith(".py") else name
    if stem == "__init__":
        return package or stem
    return f"{package}.{stem}" if package else stem
