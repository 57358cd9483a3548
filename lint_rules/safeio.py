"""Reading and writing project files without trusting what the repository put in their place.

A checkout can hold a FIFO, a symlink to ``/dev/zero`` or to a file outside the project where
a source file, ``.gitignore``, baseline or catalogue is expected. So every read opens without
blocking, accepts only a regular file and stops at a size limit; every write goes through a
new temporary file (``O_EXCL``, ``O_NOFOLLOW``) in a directory that really lies inside the
project, renamed over the target, so no symlink is ever written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DATA_BYTES",
    "MAX_SOURCE_BYTES",
    "UnsafePath",
    "create_new",
    "inside",
    "read_regular",
    "replace_atomically",
]

MAX_SOURCE_BYTES = 64 * 1024 * 1024  # a Python file larger than this is reported, not read
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # pyproject.toml, .gitignore, the catalogue
MAX_DATA_BYTES = 256 * 1024 * 1024  # baseline and cache files

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class UnsafePath(OSError):
    """A path corral refuses to read or write; ``strerror`` says why."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__(errno.EINVAL, why, os.fspath(path))


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file (symlinks followed) of at most ``limit`` bytes."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise UnsafePath(path, f"not a regular file ({kind})")
        if st.st_size > limit:
            raise UnsafePath(path, f"file too large ({st.st_size} bytes, limit {limit})")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # grew while we read it
                raise UnsafePath(path, f"file too large (over {limit} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def inside(path: Path, root: Path) -> bool:
    """True if ``path``'s real location is ``root`` or below it (symlinks resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _checked_directory(directory: Path, root: Path) -> None:
    if not inside(directory, root):
        raise UnsafePath(directory, f"outside the project {root} (symlinks resolved)")


def replace_atomically(target: Path, data: bytes, root: Path, mode: int = 0o644) -> None:
    """Write ``data`` to ``target`` inside ``root``: a fresh temporary file in the target's
    directory, renamed over it. A symlink at ``target`` is replaced, never written through;
    a directory outside ``root`` is refused."""
    directory = target.parent
    _checked_directory(directory, root)
    if target.is_symlink() and not inside(target, root):
        raise UnsafePath(target, "is a symlink to a file outside the project")
    import tempfile  # its import (random, shutil) costs every run; only writes need it

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_new(target: Path, data: bytes, root: Path, mode: int = 0o644) -> bool:
    """Create ``target`` only if nothing (not even a dangling symlink) is there; False if
    something is. Never follows a symlink."""
    _checked_directory(target.parent, root)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True
