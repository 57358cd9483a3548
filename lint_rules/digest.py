"""BLAKE2b, the one hash and MAC the linter uses, without loading OpenSSL.

``import hashlib`` loads ``_hashlib`` (OpenSSL) whatever is asked of it, a twentieth of a
one-file check's start-up; BLAKE2b is built into CPython as ``_blake2``. Keyed BLAKE2b is
a MAC in its own right (RFC 7693), so signing needs no ``hmac`` either. Where ``_blake2``
is missing (another interpreter, a future layout), ``hashlib`` gives the same digests.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


try:
    from _blake2 import blake2b as _blake2b
except ImportError:  # pragma: no cover - an interpreter without the built-in module
    from hashlib import blake2b as _blake2b
try:
    from _operator import _compare_digest  # what hmac.compare_digest is
except ImportError:  # pragma: no cover
    from hmac import compare_digest as _compare_digest  # type: ignore[no-redef]

__all__ = ["blake2b", "hexdigest", "mac", "same"]


def blake2b(data: bytes = b"", *, digest_size: int = 32, key: bytes = b"") -> Any:
    """A BLAKE2b object (``update``/``hexdigest``), keyed when ``key`` is given."""
    return _blake2b(data, digest_size=digest_size, key=key)


def hexdigest(data: bytes, digest_size: int = 32) -> str:
    return str(_blake2b(data, digest_size=digest_size).hexdigest())


def mac(key: bytes, data: bytes) -> str:
    """The keyed BLAKE2b tag of ``data`` (hex): keys longer than 64 bytes are hashed first."""
    if len(key) > 64:
        key = _blake2b(key).digest()
    return str(_blake2b(data, digest_size=32, key=key).hexdigest())


def same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison, as ``hmac.compare_digest`` (which imports hashlib)."""
    return bool(_compare_digest(a, b))
