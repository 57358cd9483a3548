"""The prefilter over-approximates the resolver, organisation rules included: any file with a
finding passes it. It pairs each watched module with its own targets' member names, and lets
a dynamic lookup through only where its folded strings could spell an enabled target."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from corral.lint_rules.cache import ResultCache
from corral.lint_rules.catalogue import load_catalogue
from corral.lint_rules.config import load_config
from corral.lint_rules.engine import check_module, check_text
from corral.lint_rules.policy import with_organisation_rules
from corral.lint_rules.ruleset import RuleSet
from corral.lint_rules.runner import check_files
from hypothesis import given, settings
from hypothesis import strategies as st
from linthelpers import ROOT, ruleset, run_corral

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
    # the reference path takes no prefilter, so a file the prefilter would wrongly drop still
    # has its findings here to compare with
    findings, _ = check_module(source.encode(), "example.py", RULES, reference=True)
    if style != "star":
        assert findings, source  # every form but the star import is resolved
    if findings:
        assert RULES.may_match(source.encode()), source


# -- dynamic lookups: the names are folded from string pieces (CRL301) ---------------------
# every name a dynamic lookup reports: a catalogue target (or loop method) whose rule is on
_DYNAMIC = sorted(q for q, code in RULES.all_exact.items() if code in RULES.enabled)
_QUOTES = ["'", '"', "'''", '"""']


@st.composite
def _literal(draw: st.DrawFn, value: str) -> str:
    """A string literal whose value is ``value``: any quotes, prefix and escapes."""
    quote = draw(st.sampled_from(_QUOTES))
    chars: list[str] = []
    escaped = False
    for char in value:
        how = draw(st.sampled_from(["plain"] * 6 + ["x", "u", "U", "N", "octal", "newline"]))
        if how == "x":
            chars.append(f"\\x{ord(char):02x}")
        elif how == "u":
            chars.append(f"\\u{ord(char):04x}")
        elif how == "U":
            chars.append(f"\\U{ord(char):08x}")
        elif how == "N":
            chars.append(f"\\N{{{unicodedata.name(char)}}}")
        elif how == "octal":
            chars.append(f"\\{ord(char):o}")
        elif how == "newline":  # a line continuation inside the literal makes nothing
            chars.append("\\\n" + char)
        else:
            chars.append(char)
        escaped = escaped or how != "plain"
    prefixes = ["", "u", "U"] if escaped else ["", "u", "r", "R", "U"]
    if "{" not in value and "}" not in value and "\\N" not in "".join(chars):
        prefixes += ["f", "F"] if escaped else ["f", "rf", "Fr"]
    return draw(st.sampled_from(prefixes)) + quote + "".join(chars) + quote


@st.composite
def _folded(draw: st.DrawFn, value: str, depth: int = 0) -> str:
    """An expression the resolver folds to ``value``: literals joined by ``+`` or implicit
    concatenation, ``%`` and ``format`` placeholders (split over literals too), ``join``."""
    forms = ["literal"] if len(value) < 2 or depth > 2 else []
    forms = forms or ["literal", "plus", "implicit", "percent", "format", "join", "split%"]
    form = draw(st.sampled_from(forms))
    if form == "literal":
        return draw(_literal(value))
    cut = draw(st.integers(1, len(value) - 1))
    left, right = value[:cut], value[cut:]
    if form == "plus":
        return f"({draw(_folded(left, depth + 1))} + {draw(_folded(right, depth + 1))})"
    if form == "implicit":
        return f"({draw(_literal(left))} {draw(_literal(right))})"
    if form == "split%":  # "%" + "screate_task" % "": the placeholder spans two literals
        return f'(("%" + {draw(_literal("s" + value))}) % "")'
    end = draw(st.integers(cut, len(value)))
    middle, rest = value[cut:end], value[end:]
    inner = draw(_folded(middle, depth + 1)) if middle else draw(st.sampled_from(['""', "''"]))
    if form == "percent":
        wrap = draw(st.sampled_from(["{}", "({},)"]))
        return f"({draw(_literal(left + '%s' + rest))} % {wrap.format(inner)})"
    if form == "format":
        holder = draw(st.sampled_from(["{}", "{0}"]))
        return f"{draw(_literal(left + holder + rest))}.format({inner})"
    sep = draw(st.sampled_from(["", "."])) if "." in value else ""
    parts = value.split(".") if sep else [left, middle + rest]
    rendered = ", ".join(draw(_folded(p, depth + 1)) if p else '""' for p in parts)
    brackets = draw(st.sampled_from(["[{}]", "({},)"]))
    return f"{draw(_literal(sep)) if sep else repr(sep)}.join({brackets.format(rendered)})"


_FILLERS = [
    "",
    "import json\n",
    "# caf\u00e9 \uff43\uff52\uff45\uff41\uff54\uff45_task\n",  # non-ASCII (NFKC: create_task)
    "x = b'create_task'\n",
    "ñame = 'Thread'\n",
    "s = r'\\x41' + '\\0'\n",
    'doc = """\\x20"""\n',
]


@st.composite
def _dynamic_source(draw: st.DrawFn) -> str:
    """A module reaching a target through a dynamic lookup whose names are folded."""
    target = draw(st.sampled_from(_DYNAMIC))
    module, *rest = target.split(".")
    cut = draw(st.integers(0, len(rest) - 1))  # rest[:cut] is reached by attribute
    head, tail = ".".join([module, *rest[:cut]]), ".".join(rest[cut:])
    folded = lambda value: draw(_folded(value))  # noqa: E731
    form = draw(
        st.sampled_from(
            [
                *("getattr", "vars", "dict", "import_module", "import_attr", "dunder"),
                *("modules", "modules.get", "modules-full"),
            ]
        )
    )
    imports, use = "", ""
    if form == "getattr":
        imports, use = f"import {module}", f"getattr({head}, {folded(tail)})"
    elif form == "vars":
        imports, use = f"import {module}", f"vars({head})[{folded(tail)}]"
    elif form == "dict":
        imports, use = f"import {module}", f"{head}.__dict__[{folded(tail)}]"
    elif form == "import_module":
        imports = "import importlib"
        use = f"getattr(importlib.import_module({folded(head)}), {folded(tail)})"
    elif form == "import_attr":  # the module name is folded, the member is spelled
        imports, use = (
            "import importlib",
            f"importlib.import_module({folded(module)}).{'.'.join(rest)}",
        )
    elif form == "dunder":  # __import__("a.b") returns a: the head is all that counts
        sub = draw(st.sampled_from(["", ".x", ".tasks"]))
        use = f"getattr(__import__({folded(module + sub)}), {folded('.'.join(rest))})"
    elif form == "modules":
        imports, use = "import sys", f"getattr(sys.modules[{folded(head)}], {folded(tail)})"
    elif form == "modules.get":
        imports, use = "import sys", f"sys.modules.get({folded(head)}).{tail}"
    else:
        imports, use = "import sys", f"sys.modules[{folded(target)}]"
    place = draw(st.sampled_from(["module", "function", "bound", "alias"]))
    if place == "module":
        body = f"{use}(job())\n"
    elif place == "function":
        body = f"def run(job):\n    return {use}(job())\n"
    elif place == "alias":  # bound at module level, called in a function
        body = f"launch = {use}\ndef run(job):\n    return launch(job())\n"
    else:  # the module bound at module level, looked up in a function
        imports = f"{imports}\nimport importlib" if "importlib" not in imports else imports
        body = (
            f"mod = importlib.import_module({folded(module)})\n"
            f"def run(job):\n    return getattr(mod, {folded('.'.join(rest))})(job())\n"
        )
    return draw(st.sampled_from(_FILLERS)) + imports + "\n" + body


def _rows(source: str, *, reference: bool) -> list[tuple[object, ...]]:
    found = check_module(source.encode(), "example.py", RULES, reference=reference)[0]
    return sorted((f.line, f.col, f.code, f.message, f.kind) for f in found)


@settings(max_examples=400, deadline=None)
@given(source=_dynamic_source())
def test_folded_dynamic_lookups_pass_the_prefilter_and_the_function_skip(source: str) -> None:
    """However the names are folded (split module names and members, %, format, join,
    implicit concatenation, escapes, any quotes and prefixes, non-ASCII text around), the
    reference path reports the lookup, the prefilter lets the file through and the fast
    path (per-function skip included) reports exactly the same."""
    slow = _rows(source, reference=True)
    assert any(row[4] == "dynamic" for row in slow), source  # the generator is honest
    assert RULES.may_match(source.encode()), source
    assert _rows(source, reference=False) == slow, source


# each evasion in a file of its own (one file with all would pass on any one of them), with
# the lines its CRL301 findings are on
EVASIONS = {
    "split_member": (
        'import asyncio\ndef run(j):\n    getattr(asyncio, "create_" + "task")(j)\n',
        [3],
    ),
    "percent": (
        'import asyncio\ndef run(j):\n    getattr(asyncio, "ensure_%s" % "future")(j)\n',
        [3],
    ),
    "format": (
        'import asyncio\ndef run(j):\n    getattr(asyncio, "{}_task".format("create"))(j)\n',
        [3],
    ),
    "join": (
        'import threading\ndef run(w):\n    getattr(threading, "".join(["Thr", "ead"]))(w)\n',
        [3],
    ),
    "implicit": ('import asyncio\ndef run(j):\n    vars(asyncio)["create_" "task"](j)\n', [3]),
    "split_module": (
        "import importlib\ndef run(j):\n"
        '    importlib.import_module("asyn" + "cio").create_task(j)\n',
        [3],
    ),
    "placeholder_module": (
        "import importlib\ndef run(j):\n"
        '    importlib.import_module("%sasyncio" % "").create_task(j)\n',
        [3],
    ),
    "escaped_module": (
        'import sys\ndef run(j):\n    sys.modules.get("as\\x79ncio").ensure_future(j)\n',
        [3],
    ),
    "escaped_percent": (
        'import asyncio\ndef run(j):\n    getattr(asyncio, "\\x25screate_task" % "")(j)\n',
        [3],
    ),
    "split_placeholder": (
        'import asyncio\ndef run(j):\n    getattr(asyncio, ("%" + "screate_task") % "")(j)\n',
        [3],
    ),
    "line_continuation": (
        'import asyncio\ndef run(j):\n    getattr(asyncio, "create_\\\ntask")(j)\n',
        [3],
    ),
    "dunder_import": (
        'def run(j):\n    getattr(__import__("asyncio.tasks"), "ensure_" "future")(j)\n',
        [2],
    ),
    "triple_quoted": (
        "import asyncio\ndef run(j):\n    getattr(asyncio, '''create_''' + r'task')(j)\n",
        [3],
    ),
    # a name bound at module level to a lookup's result, used in a function
    "bound_module": (
        'import importlib\nmod = importlib.import_module("asyncio")\n'
        'def run(j):\n    getattr(mod, "create_" + "task")(j)\n',
        [4],
    ),
    "bound_lookup": (
        'import asyncio\nlaunch = getattr(asyncio, "create_" + "task")\n'
        "def run(j):\n    launch(j)\n",
        [2, 4],
    ),
    "bound_subscript": (
        'import importlib\nm = importlib.import_module("asyncio")\n'
        'def run(j):\n    m.tasks["create_" + "task"](j)\n',
        [4],
    ),
}


def test_every_evasion_is_reported_end_to_end(tmp_path: Path) -> None:
    for name, (source, _) in EVASIONS.items():
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    result = run_corral("check", "--no-cache", "--output-format", "json", ".", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    found: dict[str, list[int]] = {}
    for finding in json.loads(result.stdout):
        if finding["code"] == "CRL301":
            found.setdefault(Path(finding["path"]).stem, []).append(finding["line"])
    assert found == {name: lines for name, (_, lines) in EVASIONS.items()}


# a dynamic lookup that can reach no enabled target: parsed before, skipped now
NOTHING_TO_FIND = [
    "import threading\ndef get(name):\n    return getattr(threading, name)\n",
    "import importlib\ndef load(name):\n    return importlib.import_module(name)\n",
    "import sys\nthis = sys.modules[__name__]\n",
    'import asyncio\nloop = getattr(asyncio, "get_event_loop")()\n',
    'import importlib\njson = importlib.import_module("json")\n',
    'import threading\nlocal = vars(threading)["local"]\n',
    'import asyncio, sys\nprint(asyncio.__dict__["sleep"], sys.modules.get("asyncio"))\n',
    'import sys\nmod = sys.modules.get("thread" + "ing")\nprint(mod.__name__)\n',
]


@pytest.mark.parametrize("source", NOTHING_TO_FIND)
def test_a_lookup_that_can_spell_no_target_is_not_parsed(source: str, tmp_path: Path) -> None:
    assert _rows(source, reference=True) == []
    assert not RULES.may_match(source.encode())
    (tmp_path / "plugin.py").write_text(source)
    files = [("plugin.py", tmp_path / "plugin.py")]
    assert check_files(files, RULES, ResultCache(None, "t"), jobs=1).parsed == 0


def test_a_lookup_of_a_target_whose_rule_is_off_is_not_parsed() -> None:
    # open_nursery's rule is strict: without it, reaching it dynamically reports nothing
    source = b'import trio\nnursery = getattr(trio, "open_" + "nursery")()\n'
    strict, default = ruleset(strict=True), ruleset(strict=False)
    assert check_module(source, "example.py", strict, reference=True)[0]
    assert strict.may_match(source)
    assert not default.may_match(source)


def test_a_percent_d_of_an_infinite_float_is_no_crash(tmp_path: Path) -> None:
    (tmp_path / "inf.py").write_text('import asyncio\nx = getattr(asyncio, "%d" % 1e999)\n')
    result = run_corral("check", "--no-cache", "inf.py", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
