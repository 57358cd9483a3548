"""The fallback parser for syntax newer than the running interpreter, run where it cannot hurt.

LibCST reads ``type X = ...``, PEP 695 type parameters and PEP 701 f-strings on any Python, and
the few newer constructs are lowered, line for line, to code this interpreter parses. Its
parser recurses natively and grows quadratically on long chains: a 2,000-deep call segfaults
the process, a 1,000-deep one costs seconds and gigabytes. So it runs only when the syntax
error is where newer syntax would be, in a child process with a time and memory limit, and
only on files up to ``MAX_BYTES``; a crash, timeout or refusal is the file's CRL901 reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .source import split_lines

__all__ = ["MAX_BYTES", "Lowered", "lower", "lower_contained", "may_be_newer_syntax"]

MAX_BYTES = 2 * 1024 * 1024
TIMEOUT_SECONDS = 60.0
MEMORY_BYTES = 4 * 1024**3

_TYPE_PARAMS = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+\w+[ \t]*\[", re.MULTILINE)
_TYPE_ALIAS = re.compile(r"^[ \t]*type[ \t]+\w", re.MULTILINE)


@dataclass(frozen=True)
class Lowered:
    """Lowered source, or why there is none."""

    text: str | None = None
    problem: str = ""


def may_be_newer_syntax(text: str, error: SyntaxError) -> bool:
    """True if a parse error may come from syntax this interpreter predates (PEP 695 type
    parameters and aliases, PEP 696 defaults, PEP 701 f-strings); any other error is reported
    as it is, without paying for the fallback."""
    if sys.version_info < (3, 12) and (error.msg or "").startswith("f-string"):
        return True
    if sys.version_info >= (3, 14):  # pragma: no cover - nothing newer to lower yet
        return False
    lines = split_lines(text)
    lineno = error.lineno or 0
    window = "\n".join(lines[max(lineno - 3, 0) : lineno])
    return bool(_TYPE_PARAMS.search(window) or _TYPE_ALIAS.search(window))


def lower_contained(text: str) -> Lowered:
    """``lower`` in a child process with limits: whatever LibCST does, this process survives."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BYTES:
        return Lowered(problem=f"too large for the fallback parser: {len(data)} bytes")
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", "from corral.lint_rules.lowering import main; main()"],
            input=data,
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Lowered(problem=f"the fallback parser took longer than {TIMEOUT_SECONDS:.0f} s")
    except OSError as exc:
        return Lowered(problem=f"cannot run the fallback parser: {exc.strerror or exc}")
    if done.returncode < 0:
        return Lowered(problem=f"the fallback parser crashed (signal {-done.returncode})")
    if done.returncode != 0:
        return Lowered(problem="not valid in any Python version LibCST knows")
    return Lowered(text=done.stdout.decode("utf-8", "surrogatepass"))


def main() -> None:
    """Child side: source on stdin, lowered source on stdout; exit 1 if LibCST cannot read it."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    lowered = lower(sys.stdin.buffer.read().decode("utf-8", "surrogatepass"))
    if lowered is None:
        sys.exit(1)
    sys.stdout.buffer.write(lowered.encode("utf-8", "surrogatepass"))


def _newlines(count: int) -> str:
    """A string literal spanning ``count`` line ends (keeps later lines where they were)."""
    return f'"""{chr(10) * count}""",' if count > 0 else ""


def lower(text: str) -> str | None:
    """Rewrite constructs newer than this interpreter into equivalent-for-us older syntax."""
    try:
        import libcst as cst
    except ImportError:  # pragma: no cover - libcst is a dependency
        return None
    try:
        module = cst.parse_module(text)
    except Exception:
        return None

    class Lower(cst.CSTTransformer):
        def leave_TypeAlias(self, original: cst.TypeAlias, updated: cst.TypeAlias) -> cst.Assign:
            return cst.Assign(targets=[cst.AssignTarget(updated.name)], value=updated.value)

        def leave_FunctionDef(
            self, original: cst.FunctionDef, updated: cst.FunctionDef
        ) -> cst.FunctionDef:
            return updated.with_changes(type_parameters=None)

        def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
            return updated.with_changes(type_parameters=None)

        def leave_FormattedString(
            self, original: cst.FormattedString, updated: cst.FormattedString
        ) -> cst.BaseExpression:
            # a tuple of the replacement fields' expressions, line for line: what they call
            # is what we check, and a 3.12 f-string may nest quotes 3.11 cannot parse
            return cst.parse_expression("(" + "".join(_fstring_parts(updated.parts)) + ")")

    def _fstring_parts(parts: Sequence[cst.BaseFormattedStringContent]) -> list[str]:
        out: list[str] = []
        for part in parts:
            if isinstance(part, cst.FormattedStringExpression):
                before = module.code_for_node(part.whitespace_before_expression).count("\n")
                expression = module.code_for_node(part.expression)
                spec = _fstring_parts(part.format_spec or ())
                after = module.code_for_node(part).count("\n") - before
                after -= expression.count("\n") + sum(p.count("\n") for p in spec)
                out.extend([_newlines(before), f"({expression}),", *spec, _newlines(after)])
            else:
                out.append(_newlines(module.code_for_node(part).count("\n")))
        return out

    try:
        return module.visit(Lower()).code
    except Exception:
        return None
