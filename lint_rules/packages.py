"""Which dotted package a file belongs to: needed by the prefilter and the resolver alike."""

from __future__ import annotations

from pathlib import Path

__all__ = ["package_of"]


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
