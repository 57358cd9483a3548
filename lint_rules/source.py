"""Turn file bytes into an ``ast`` tree, or into the reason it cannot be checked.

Detection runs on the stdlib ``ast`` (fast). When the running interpreter cannot parse a file
and the error is where syntax newer than this interpreter would be (``type X = ...``, PEP 695
type parameters, PEP 701 f-strings), LibCST's parser reads it in a separate, bounded process
(see ``lowering``) and the few newer constructs are lowered, line for line, to code this
interpreter parses. Otherwise, or if that fails too, the file is unreadable (CRL901).
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "Unreadable",
    "decode",
    "deep_recursion",
    "parse",
    "parse_without_fallback",
    "split_lines",
]

from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast


def split_lines(text: str) -> list[str]:
    """Lines as the tokenizer counts them (``ast`` line numbers): only \\n, \\r\\n and \\r end a
    line, unlike ``str.splitlines``, which also splits on form feeds and \\u2028."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


class Unreadable(Record, frozen=True):
    """Why a file could not be checked, and where (1-based line and column)."""

    reason: str
    line: int = 1
    col: int = 1


def decode(data: bytes) -> str | Unreadable:
    """Decode like the interpreter does: BOM, PEP 263 coding cookie, else UTF-8 (strict)."""
    # a cookie counts on the first two lines (split at \n only, as the interpreter reads them)
    first = data.find(b"\n")
    second = data.find(b"\n", first + 1) if first >= 0 else -1
    head = data if second < 0 else data[:second]
    if b"coding" not in head and not head.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8"  # the common case, without tokenize's line-by-line sniffing
    else:
        import tokenize

        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            return Unreadable(f"cannot decode: {exc}")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return Unreadable(
            f"cannot decode as {encoding}: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(declare the encoding with a '# -*- coding: ... -*-' line)",
            line,
            col,
        )
    except LookupError:
        return Unreadable(f"cannot decode: unknown encoding {encoding!r}")


@contextmanager
def deep_recursion(limit: int = 20_000) -> Iterator[None]:
    """Long operator chains in generated code nest deeper than the default recursion limit
    allows, both in ``ast`` construction and in the resolver's walk."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def parse_without_fallback(
    text: str, filename: str = "<unknown>"
) -> ast.Module | Unreadable | SyntaxError:
    """``parse`` short of the LibCST fallback: the SyntaxError it would start from when the
    error may come from syntax newer than this Python (for callers that must not wait for
    the fallback's process, such as the language server's event loop)."""
    import ast  # only a file to parse needs it: a warm run parses none

    try:
        with deep_recursion(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the user's SyntaxWarnings are not our findings
            return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        first = exc
    except (ValueError, RecursionError, MemoryError) as exc:
        return Unreadable(f"cannot parse: {type(exc).__name__}: {exc}")
    from .lowering import may_be_newer_syntax

    if not may_be_newer_syntax(text, first):
        line, col = first.lineno or 1, max(first.offset or 1, 1)
        return Unreadable(f"cannot parse: {first.msg}", line, col)
    return first


def parse(text: str, filename: str = "<unknown>") -> ast.Module | Unreadable:
    """Parse with ``ast``; fall back to LibCST lowering for syntax newer than this Python."""
    first = parse_without_fallback(text, filename)
    if not isinstance(first, SyntaxError):
        return first
    line, col = first.lineno or 1, max(first.offset or 1, 1)
    from .lowering import lower_contained

    lowered = lower_contained(text)
    if lowered.text is not None:
        import ast

        try:
            with deep_recursion(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ast.parse(lowered.text, filename=filename)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
    why = f" ({lowered.problem})" if lowered.problem else ""
    return Unreadable(f"cannot parse: {first.msg}{why}", line, col)
