"""A rule's examples are its tests: run them for the built-in and the organisation rules alike.

``corral rules --test`` runs this, so a policy pack's CI proves its own rules with the same
engine (and the same configuration of examples) that corral's own test suite uses.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from .catalogue import Catalogue, Example, Rule
from .engine import check_text
from .ruleset import RuleSet

__all__ = ["ExampleFailure", "check_example", "run_examples"]


@dataclass(frozen=True)
class ExampleFailure:
    """An example whose findings are not the ones it declares."""

    rule: Rule
    kind: str  # "invalid" | "valid"
    index: int
    example: Example
    expected: tuple[str, ...]
    actual: tuple[str, ...]
    problem: str = "findings differ"

    def render(self) -> str:
        head = f"{self.rule.code} {self.kind} example {self.index + 1} ({self.rule.origin}): "
        lines = [head + self.problem]
        lines += difflib.unified_diff(
            [f"{e}\n" for e in self.expected],
            [f"{a}\n" for a in self.actual],
            "expected",
            "actual",
            lineterm="\n",
        )
        lines += [f"    | {line}\n" for line in self.example.code.rstrip("\n").split("\n")]
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def example_rules(catalogue: Catalogue, rule: Rule, example: Example) -> RuleSet:
    """What an example runs under: every rule of its level, plus its own ``config``."""
    enabled = [r.code for r in catalogue if rule.strict or not r.strict]
    return RuleSet.build(catalogue, enabled, no_suppress=example.no_suppress)


def check_example(
    catalogue: Catalogue, rule: Rule, kind: str, index: int, example: Example
) -> ExampleFailure | None:
    found = check_text(example.code, "example.py", example_rules(catalogue, rule, example))
    actual = tuple(f"{f.line}:{f.col} {f.code}" for f in sorted(found))
    expected = tuple(f"{line}:{col} {code}" for line, col, code in example.expect)
    if actual != expected:
        return ExampleFailure(rule, kind, index, example, expected, actual)
    if kind == "invalid" and not any(code == rule.code for _, _, code in example.expect):
        problem = f"does not exercise {rule.code}"
        return ExampleFailure(rule, kind, index, example, expected, actual, problem)
    return None


def run_examples(
    catalogue: Catalogue, rules: Iterable[Rule] | None = None
) -> tuple[int, list[ExampleFailure]]:
    """(examples run, failures) for ``rules`` (default: the whole catalogue)."""
    count = 0
    failures: list[ExampleFailure] = []
    for rule in catalogue if rules is None else rules:
        for kind, examples in (("invalid", rule.invalid), ("valid", rule.valid)):
            for index, example in enumerate(examples):
                count += 1
                failure = check_example(catalogue, rule, kind, index, example)
                if failure is not None:
                    failures.append(failure)
    return count, failures
