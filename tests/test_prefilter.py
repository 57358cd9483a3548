"""The prefilter over-approximates the resolver, organisation rules included: any file with a
finding passes it. It pairs each watched module with its own targets' member names."""

from __future__ import annotations

import pytest
from corral.lint_rules.catalogue import load_catalogue
from corral.lint_rules.config import load_config
from corral.lint_rules.engine import check_text
from corral.lint_rules.policy import with_organisation_rules
from corral.lint_rules.ruleset import RuleSet
from hypothesis import given, settings
from hypothesis import strategies as st
from linthelpers import ROOT

PACK = ROOT / "examples" / "policy-pack" / "acme_policy" / "policy.toml"


def _catalogue():  # type: ignore[no-untyped-def]
    config = load_config(PACK)
    return with_organisation_rules(load_catalogue(), config.organisation)


CATALOGUE = _catalogue()
RULES = RuleSet.build(CATALOGUE, list(CATALOGUE.rules))


@pytest.mark.parametrize(
    "example",
    [e.code for rule in CATALOGUE for e in rule.invalid],
)
def test_every_invalid_example_passes_the_prefilter(example: str) -> None:
    # meta findings (CRL9xx) come from suppression comments, which bypass the prefilter
    found = [f for f in check_text(example, "example.py", RULES) if not f.code.startswith("CRL9")]
    assert not found or RULES.may_match(example.encode())


HARD = [
    "import os, \\\n    threading\nthreading.Thread(target=f)\n",
    "import sys; import threading\nthreading.Thread(target=f)\n",
    "\ufeffimport threading\nthreading.Thread(target=f)\n",
    "from threading import *\nThread(target=f)\n",
    "import asyncio.tasks as t\nt.create_task(c())\n",
    "from \\\n  threading import Thread\nThread()\n",
    'import importlib\nimportlib.import_module("threading").Thread\n',
    "from sched import scheduler as Every\nEvery()\n",
    "import socketserver as ss\nclass S(ss.ThreadingMixIn): ...\nS()\n",
]


@pytest.mark.parametrize("source", HARD)
def test_hard_import_forms_pass_the_prefilter(source: str) -> None:
    assert check_text(source, "example.py", RULES), "the case must have a finding"
    assert RULES.may_match(source.encode())


def test_a_member_name_of_another_module_does_not_pass() -> None:
    # sched is watched (ACME101) and Thread is a member name, but of threading's target only
    assert not RULES.may_match(b"import sched\nclass Thread: ...\nThread()\n")
    assert not RULES.may_match(b"import osmosis\nscheduler()\n")
    assert RULES.may_match(b"import sched\nsched.scheduler()\n")


_TARGETS = sorted(t for rule in CATALOGUE for t in rule.targets if not t.endswith("*"))


@settings(max_examples=200, deadline=None)
@given(
    target=st.sampled_from(_TARGETS),
    style=st.sampled_from(["import", "import-as", "from", "from-as", "star"]),
    alias=st.sampled_from(["X", "_impl", "mod2"]),
    filler=st.sampled_from(["", "import json\n", "x = 'Thread'\n", "# import threading\n"]),
)
def test_resolved_findings_always_pass_the_prefilter(
    target: str, style: str, alias: str, filler: str
) -> None:
    module, _, member = target.rpartition(".")
    source = {
        "import": f"import {module}\n{target}()\n",
        "import-as": f"import {module} as {alias}\n{alias}.{member}()\n",
        "from": f"from {module} import {member}\n{member}()\n",
        "from-as": f"from {module} import {member} as {alias}\n{alias}()\n",
        "star": f"from {module} import *\n{member}()\n",
    }[style]
    source = filler + source
    if check_text(source, "example.py", RULES):
        assert RULES.may_match(source.encode()), source
