"""Messages say what was found, and findings carry it as data (qualname, kind, evades)."""

from __future__ import annotations

import io
import json

from corral.lint_rules.catalogue import load_catalogue
from corral.lint_rules.engine import check_text
from corral.lint_rules.reporters import report_json, report_text
from corral.lint_rules.ruleset import RuleSet
from corral.lint_rules.sarif import sarif_log
from linthelpers import check, ruleset


def _one(source: str, **kwargs: bool) -> tuple[str, str, str, str]:
    (finding,) = check(source, **kwargs)
    return finding.message, finding.qualname, finding.kind, finding.evades


def test_import_line_says_what_it_imports() -> None:
    assert _one("from threading import Thread\n") == (
        "`from threading import Thread` imports `threading.Thread`",
        "threading.Thread",
        "import",
        "",
    )
    message, *_ = _one("from threading import Timer as T\n")
    assert message == "`from threading import Timer as T` imports `threading.Timer`"
    message, *_ = _one("import concurrent.futures.thread.ThreadPoolExecutor as P\n")
    assert message.startswith("`import concurrent.futures.thread.ThreadPoolExecutor as P` imports")


def test_call_names_the_api_with_the_rule_summary() -> None:
    message, qualname, kind, _ = _one("import asyncio\nasyncio.create_task(job())\n")
    assert message == "`asyncio.create_task`: spawns a task nobody owns"
    assert (qualname, kind) == ("asyncio.create_task", "call")


def test_a_pure_reference_says_reference_not_created_or_started() -> None:
    message, qualname, kind, _ = _one(
        "import concurrent.futures\nfactory = concurrent.futures.ThreadPoolExecutor\n"
    )
    assert message == (
        "reference to `concurrent.futures.ThreadPoolExecutor` (banned by raw-executor-or-process)"
    )
    assert kind == "reference" and "created" not in message and "started" not in message
    assert qualname == "concurrent.futures.ThreadPoolExecutor"


def test_class_definition_and_instantiation_name_the_class_and_the_chain() -> None:
    source = (
        "import threading\n"
        "class Poller(threading.Thread):\n    pass\n"
        "class Heartbeat(Poller):\n    pass\n"
        "Beat = Heartbeat\n"
        "Beat()\n"
    )
    defined, made = check(source)
    assert (defined.message, defined.kind) == ("`Poller` subclasses `threading.Thread`", "subclass")
    assert made.kind == "instantiation" and made.qualname == "threading.Thread"
    assert made.message == (
        "instance of `Heartbeat`, a subclass of `threading.Thread` via `Poller`: "
        "thread started outside the governed runtime"
    )


def test_run_in_executor_creates_no_executor_and_a_process_is_not_a_pool() -> None:
    message, qualname, *_ = _one(
        "import asyncio\n"
        "async def f():\n"
        "    await asyncio.get_running_loop().run_in_executor(None, g)\n"
    )
    assert message == (
        "`loop.run_in_executor` runs work on the loop's executor (it creates none), "
        "outside the governed runtime"
    )
    assert qualname == "asyncio.AbstractEventLoop.run_in_executor"
    message, *_ = _one("import multiprocessing\nmultiprocessing.Process(target=f)\n")
    assert "process pool" not in message and "process" in message


def test_gather_wording_fits_each_fanout_form() -> None:
    base = "import asyncio\nasync def f(xs):\n    await asyncio.gather({})\n"
    forms = {
        "*map(g, xs)": "`asyncio.gather` over `*map(...)`",
        "*(g(x) for x in xs)": "`asyncio.gather` over `*(... for ...)`",
        "*[g(x) for x in xs]": "`asyncio.gather` over `*[... for ...]`",
    }
    for args, start in forms.items():
        message, _, kind, _ = _one(base.format(args))
        assert message == f"{start}: starts one task per item with no limit"
        assert kind == "call"


def test_dynamic_lookup_names_the_evaded_rule_once_and_hints_its_replacement() -> None:
    source = 'import asyncio\ngetattr(asyncio, "create_task")(job())\n'
    message, qualname, kind, evades = _one(source)
    assert message == "`asyncio.create_task` reached through a dynamic lookup, evading CRL201"
    assert (qualname, kind, evades) == ("asyncio.create_task", "dynamic", "CRL201")
    catalogue = load_catalogue()
    findings = check(source)
    text = io.StringIO()
    report_text(findings, catalogue, text)
    replacement = catalogue.rules["CRL201"].replacement
    assert f"(use: {replacement})" in text.getvalue()
    rows = io.StringIO()
    report_json(findings, catalogue, rows)
    (row,) = json.loads(rows.getvalue())
    assert (row["qualname"], row["kind"], row["evades"]) == (qualname, kind, evades)
    assert row["replacement"] == replacement
    (result,) = sarif_log(findings, catalogue)["runs"][0]["results"]
    assert result["properties"] == {"qualname": qualname, "kind": kind, "evades": evades}
    assert result["message"]["text"].endswith(f"(use: {replacement})")


def test_a_dynamically_looked_up_task_constructor_is_reported_where_called() -> None:
    source = 'import asyncio\nmake = getattr(asyncio, "Task")\nmake(job())\n'
    message, qualname, kind, evades = _one(source, strict_rules=False)
    assert message == "`asyncio.Task` reached through a dynamic lookup, evading CRL206"
    assert (qualname, kind, evades) == ("asyncio.Task", "dynamic", "CRL206")
    (finding,) = check(source, strict_rules=False)
    assert finding.line == 3
    catalogue = load_catalogue()
    without = RuleSet.build(catalogue, [r.code for r in catalogue if r.code != "CRL206"])
    # with the evaded rule off, reaching its target dynamically is allowed too
    assert check_text(source, "example.py", without) == []


def test_more_than_one_rule_can_use_one_structural_matcher() -> None:
    from corral.lint_rules.catalogue import parse_catalogue

    text = (load_catalogue_text()).replace(
        "    also: [gather-comprehension]\n", "    also: [gather-comprehension, dynamic-lookup]\n"
    )
    rules = ruleset(catalogue=parse_catalogue(text))
    assert rules.dynamic_codes == ("CRL205", "CRL301")
    from corral.lint_rules.engine import check_text

    found = check_text('import asyncio\ngetattr(asyncio, "ensure_future")\n', "x.py", rules)
    assert sorted(f.code for f in found) == ["CRL205", "CRL301"]


def load_catalogue_text() -> str:
    from importlib import resources

    return resources.files("corral.lint_rules").joinpath("rules.yaml").read_text("utf-8")
