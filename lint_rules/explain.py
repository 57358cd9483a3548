"""A rule's documentation: the ``corral explain`` text and the address of its README section.

One rendering serves the CLI (``corral explain``) and the language server (hover and the
"explain this rule" action), so the editor never says something the terminal does not.
"""

from __future__ import annotations

import textwrap

from .catalogue import Catalogue, Rule

__all__ = ["DOCS_URL", "explain", "find_rule", "rule_anchor", "rule_url"]

DOCS_URL = "https://pypi.org/project/corral/"
"""Where the README is published; each built-in rule has a ``#### CRLnnn`` section in it."""


def find_rule(catalogue: Catalogue, name: str) -> Rule | None:
    """A rule by code (any case) or by name (``asyncio-create-task``)."""
    rule = catalogue.get(name.upper())
    if rule is None:
        rule = next((r for r in catalogue if r.name == name), None)
    return rule


def explain(rule: Rule, catalogue_source: str = "") -> str:
    """The rationale, replacement, what is flagged and the examples, as plain text; a rule
    declared outside the catalogue (an organisation's pack) says where."""
    wrap = textwrap.TextWrapper(width=88)
    out = [f"{rule.code} {rule.name} (level {rule.level}, since {rule.since})\n"]
    if catalogue_source and rule.origin != catalogue_source:
        out.append(f"Declared in {rule.origin}\n")
    out.append("\n")
    out.append(f"{rule.summary}\n\n")
    out.append("Why is this bad?\n" + "\n".join(wrap.wrap(rule.rationale)) + "\n\n")
    out.append(f"Use instead: {rule.replacement}\n")
    if rule.targets:
        out.append("\nFlags: " + ", ".join(rule.targets) + "\n")
    if rule.calls:
        out.append("Flags calls of: " + ", ".join(rule.calls) + "\n")
    if rule.methods:
        out.append("Flags methods on traced event loops: " + ", ".join(rule.methods) + "\n")
    tags = [*rule.cwe, *rule.owasp]
    if tags:
        out.append("References: " + ", ".join(tags) + "\n")
    for title, examples in (("Invalid", rule.invalid), ("Valid", rule.valid)):
        for example in examples:
            out.append(f"\n{title}:\n")
            out.append(textwrap.indent(example.code.rstrip("\n"), "    ") + "\n")
    return "".join(out)


def rule_anchor(code: str) -> str:
    """The README heading ``#### CRL201`` is reached as ``#crl201`` (GitHub-style anchors)."""
    return code.lower()


def rule_url(code: str, base: str = DOCS_URL) -> str:
    """The stable address of a rule's documentation: ``<base>#<code in lower case>``."""
    return f"{base.split('#', 1)[0]}#{rule_anchor(code)}"
