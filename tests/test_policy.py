"""The policy layer through the real CLI: packs, precedence, origins, organisation rules,
suppression governance and broken packs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from linthelpers import ROOT, run_corral

PACK = ROOT / "examples" / "policy-pack" / "acme_policy"


def write(root: Path, **files: str) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def origin_lines(stdout: str) -> dict[str, list[str]]:
    """``--show-origin`` output as {setting: ["origin<TAB>op value", ...]}."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        origin, _, setting = line.partition("\t")
        key, op, value = setting.split(" ", 2)
        found.setdefault(key, []).append(f"{origin} {op} {value}")
    return found


ORG_RULES = """\
prefix: ORG
version: "2.3.0"
rules:
  - code: ORG101
    name: raw-scheduler
    since: "1.0.0"
    level: default
    summary: in-process scheduler outside the job runner
    targets: [sched.scheduler]
    replacement: org.jobs.every
    rationale: schedulers run jobs nobody sees
    examples:
      invalid:
        - code: |
            from sched import scheduler as Every
            Every()
          expect: ["1:19 ORG101", "2:1 ORG101"]
      valid:
        - code: |
            def scheduler(): ...
            scheduler()
"""


def test_local_settings_override_the_pack_and_show_origin_says_where_each_came_from(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        **{
            "shared/base.toml": """\
                rules-version = "1.1"
                strict = true
                ignore = ["CRL202"]
                no-suppress = ["CRL301"]
                [allow]
                CRL101 = ["legacy/**"]
            """,
            "shared/policy.toml": """\
                extends = "base.toml"
                select = ["CRL1", "CRL2"]
                extend-exclude = ["generated"]
            """,
            "svc/pyproject.toml": """\
                [tool.corral]
                extends = "../shared/policy.toml"
                strict = false
                no-suppress = ["CRL201"]
                override = ["ignore"]
                ignore = ["CRL203"]
                [tool.corral.allow]
                CRL101 = ["tools/**"]
            """,
        },
    )
    svc = tmp_path / "svc"
    result = run_corral("config", "--show-origin", cwd=svc)
    assert result.returncode == 0, result.stderr
    lines = origin_lines(result.stdout)
    base, policy = f"file:{tmp_path}/shared/base.toml", f"file:{tmp_path}/shared/policy.toml"
    assert lines["strict"] == ["file:pyproject.toml = false"]
    assert lines["rules-version"] == [f'{base} = "1.1"']
    assert lines["select"] == [f'{policy} = ["CRL1", "CRL2"]']
    assert lines["no-suppress"] == [
        f'{base} = ["CRL301"]',
        'file:pyproject.toml += ["CRL201"]',
    ]
    assert lines["ignore"] == ['file:pyproject.toml = ["CRL203"]']  # override: replaced
    assert lines["allow.CRL101"] == [
        f'{base} = ["legacy/**"]',
        'file:pyproject.toml += ["tools/**"]',
    ]
    assert lines["exclude"][-1] == f'{policy} += ["generated"]'
    assert lines["exclude"][0].startswith("default = [")
    assert lines["cache-dir"] == ['default = ".corral_cache"']
    command_line = run_corral("config", "--show-origin", "--strict", cwd=svc)
    assert origin_lines(command_line.stdout)["strict"] == ["command line = true"]
    plain = run_corral("config", cwd=svc)
    assert 'no-suppress = ["CRL301"]' in plain.stdout.splitlines()
    assert "\t" not in plain.stdout

    # the effective settings are the ones enforced: CRL202 is back (ignore was overridden),
    # CRL203 is off, and CRL101 is allowed under both globs
    write(
        svc,
        **{
            "app.py": "import asyncio as a\na.ensure_future(j())\na.run_coroutine_threadsafe(c)\n",
            "legacy/t.py": "import threading\nthreading.Thread(target=f).start()\n",
            "tools/t.py": "import threading\nthreading.Thread(target=f).start()\n",
            "generated/x.py": "import asyncio\nasyncio.ensure_future(job())\n",
        },
    )
    check = run_corral("check", "--output-format", "json", cwd=svc)
    assert check.returncode == 1, check.stderr
    assert [(r["path"], r["code"]) for r in json.loads(check.stdout)] == [("app.py", "CRL202")]


def test_extends_cycle_is_refused_in_one_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "a.toml": 'extends = "b.toml"\n',
            "b.toml": 'extends = "a.toml"\n',
            "pyproject.toml": '[tool.corral]\nextends = "a.toml"\n',
        },
    )
    result = run_corral("check", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "extends cycle" in result.stderr and "a.toml" in result.stderr


def test_a_pack_reached_twice_is_applied_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "common.toml": 'no-suppress = ["CRL301"]\n',
            "a.toml": 'extends = "common.toml"\n',
            "b.toml": 'extends = "common.toml"\n',
            "pyproject.toml": '[tool.corral]\nextends = ["a.toml", "b.toml"]\n',
        },
    )
    result = run_corral("config", "--show-origin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(origin_lines(result.stdout)["no-suppress"]) == 1


@pytest.mark.parametrize(
    ("extends", "files", "needle"),
    [
        ('"no_such_policy_pack"', {}, "pack 'no_such_policy_pack' is not installed"),
        ('"missing.toml"', {}, "pack 'missing.toml': no such file"),
        ('"bad.toml"', {"bad.toml": "select = [\n"}, "invalid TOML"),
        ('"bad.toml"', {"bad.toml": 'selcet = ["CRL"]\n'}, "unknown key 'selcet'"),
        ('"bad.toml"', {"bad.toml": 'baseline = "b.json"\n'}, "baseline is a project setting"),
        ('"json:x/../../y.toml"', {}, "is not a path inside the package"),
        ('"json:nope.toml"', {}, "pack 'json:nope.toml': json has no file nope.toml"),
        ('"json.decoder:p.toml"', {}, "json.decoder is a module, not a package"),
        ('"not a name"', {}, "not a file, a package or an entry point name"),
        (
            '"org.toml"',
            {"org.toml": 'rule-files = ["r.yaml"]\n', "r.yaml": "prefix: CRL\nversion: '1.0.0'\n"},
            "prefix 'CRL' must be 2-8 capital letters",
        ),
        ('"org.toml"', {"org.toml": 'rule-files = ["none.yaml"]\n'}, "rule-files: cannot read"),
    ],
)
def test_a_missing_or_broken_pack_exits_2_naming_the_pack_and_the_problem(
    tmp_path: Path, extends: str, files: dict[str, str], needle: str
) -> None:
    write(tmp_path, **files, **{"pyproject.toml": f"[tool.corral]\nextends = {extends}\n"})
    result = run_corral("check", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_organisation_rule_resolves_aliases_and_is_shown_like_a_builtin(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "org/rules.yaml": ORG_RULES,
            "pyproject.toml": '[tool.corral]\nrule-files = ["org/rules.yaml"]\n',
            "app.py": """\
                import sched as s
                from sched import scheduler as Every
                def scheduler(): ...
                scheduler()
                Every()
                s.scheduler()
                getattr(s, "scheduler")
            """,
        },
    )
    check = run_corral("check", "--output-format", "json", "app.py", cwd=tmp_path)
    assert check.returncode == 1, check.stderr
    rows = [(r["line"], r["col"], r["code"]) for r in json.loads(check.stdout)]
    assert rows == [(2, 19, "ORG101"), (5, 1, "ORG101"), (6, 1, "ORG101"), (7, 1, "CRL301")]
    assert json.loads(check.stdout)[0]["replacement"] == "org.jobs.every"

    listing = run_corral("rules", cwd=tmp_path)
    assert "organisation rules ORG 2.3.0" in listing.stdout
    assert any(line.startswith("ORG101  raw-scheduler") for line in listing.stdout.splitlines())
    explain = run_corral("explain", "ORG101", cwd=tmp_path)
    assert explain.returncode == 0
    assert "Use instead: org.jobs.every" in explain.stdout
    assert "Declared in" in explain.stdout and "rules.yaml" in explain.stdout

    sarif = run_corral("check", "--output-format", "sarif", "app.py", cwd=tmp_path)
    log = json.loads(sarif.stdout)
    assert "ORG101" in [r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]]
    assert "ORG101" in [r["ruleId"] for r in log["runs"][0]["results"]]

    ignored = run_corral("check", "--ignore", "ORG", "--format", "json", "app.py", cwd=tmp_path)
    # with the evaded rule off, reaching its target dynamically is allowed too
    assert [r["code"] for r in json.loads(ignored.stdout)] == []


def test_rules_test_runs_organisation_examples_and_diffs_a_disagreement(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "org/rules.yaml": ORG_RULES,
            "pyproject.toml": '[tool.corral]\nrule-files = ["org/rules.yaml"]\n',
        },
    )
    good = run_corral("rules", "--test", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "examples of" in good.stderr
    (tmp_path / "org/rules.yaml").write_text(ORG_RULES.replace('"2:1 ORG101"', '"2:2 ORG101"'))
    bad = run_corral("rules", "--test", cwd=tmp_path)
    assert bad.returncode == 1
    assert "ORG101 invalid example 1" in bad.stdout
    assert "-2:2 ORG101" in bad.stdout and "+2:1 ORG101" in bad.stdout


def test_organisation_rule_may_not_take_a_target_a_builtin_rule_lists(tmp_path: Path) -> None:
    rules = ORG_RULES.replace("targets: [sched.scheduler]", "targets: [threading.Thread]")
    write(
        tmp_path,
        **{"r.yaml": rules, "pyproject.toml": '[tool.corral]\nrule-files = ["r.yaml"]\n'},
    )
    result = run_corral("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "target threading.Thread is already listed by CRL101" in result.stderr


def test_no_suppress_reports_the_comment_and_keeps_the_finding(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "policy.toml": 'no-suppress = ["CRL301"]\n',
            "pyproject.toml": '[tool.corral]\nextends = "policy.toml"\n',
            "app.py": """\
                import asyncio
                getattr(asyncio, "create_task")(job())  # corral: allow[CRL301] reason="plugins"
                asyncio.create_task(job())  # corral: allow[CRL201] reason="kept in self.tasks"
            """,
        },
    )
    result = run_corral("check", "--output-format", "json", cwd=tmp_path)
    assert result.returncode == 1
    rows = [(r["line"], r["code"]) for r in json.loads(result.stdout)]
    assert rows == [(2, "CRL301"), (2, "CRL904")]
    message = json.loads(result.stdout)[1]["message"]
    assert "CRL301 may not be suppressed" in message


def test_expired_suppression_stops_suppressing_and_names_its_owner(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "pyproject.toml": "[tool.corral]\n",
            "app.py": """\
                import asyncio
                asyncio.create_task(a())  # corral: allow[CRL201] reason="m" until="2020-03-01" owner="team-payments"
                asyncio.create_task(b())  # corral: allow[CRL201] reason="m" until="2999-03-01" owner="team-search"
            """,  # noqa: E501
        },
    )
    result = run_corral("check", "--output-format", "json", cwd=tmp_path)
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert [(r["line"], r["code"]) for r in rows] == [(2, "CRL201"), (2, "CRL905")]
    assert "expired on 2020-03-01 (owner team-payments)" in rows[1]["message"]


def test_cache_key_includes_the_packs_content(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "org/policy.toml": 'rule-files = ["rules.yaml"]\n',
            "org/rules.yaml": ORG_RULES,
            "pyproject.toml": '[tool.corral]\nextends = "org/policy.toml"\n',
            "app.py": "import sched, socketserver\nsched.scheduler()\nsocketserver.ForkingMixIn\n",
        },
    )
    first = run_corral("check", "--output-format", "json", cwd=tmp_path)
    assert [r["code"] for r in json.loads(first.stdout)] == ["ORG101"]
    assert list((tmp_path / ".corral_cache").glob("*.json"))
    wider = ORG_RULES.replace("[sched.scheduler]", "[sched.scheduler, socketserver.ForkingMixIn]")
    (tmp_path / "org/rules.yaml").write_text(wider)
    second = run_corral("check", "--output-format", "json", cwd=tmp_path)
    assert [r["code"] for r in json.loads(second.stdout)] == ["ORG101", "ORG101"]
    (tmp_path / "org/policy.toml").write_text('rule-files = ["rules.yaml"]\nignore = ["ORG"]\n')
    third = run_corral("check", cwd=tmp_path)
    assert third.returncode == 0, third.stdout


def test_the_example_pack_passes_its_own_rule_tests(tmp_path: Path) -> None:
    write(tmp_path, **{"pyproject.toml": f'[tool.corral]\nextends = "{PACK / "policy.toml"}"\n'})
    result = run_corral("rules", "--test", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_organisation_findings_are_baselined_and_left_alone_by_fix(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "org/rules.yaml": ORG_RULES,
            "pyproject.toml": '[tool.corral]\nrule-files = ["org/rules.yaml"]\n',
            "app.py": "import asyncio, sched\nsched.scheduler()\nasyncio.create_task(job())\n",
        },
    )
    assert run_corral("baseline", cwd=tmp_path).returncode == 0
    entries = json.loads((tmp_path / ".corral-baseline.json").read_text())
    assert "ORG101" in json.dumps(entries)
    assert run_corral("check", cwd=tmp_path).returncode == 0
    (tmp_path / "app.py").write_text(
        "import asyncio, sched\nsched.scheduler()\nsched.scheduler()\nasyncio.create_task(job())\n"
    )
    new = run_corral("check", "--format", "json", cwd=tmp_path)
    assert [r["code"] for r in json.loads(new.stdout)] == ["ORG101"]
    (tmp_path / "fresh.py").write_text(
        "import asyncio, sched\nsched.scheduler()\nasyncio.create_task(job())\n"
    )
    fix = run_corral("fix", "--diff", "fresh.py", cwd=tmp_path)
    assert fix.returncode == 1, fix.stderr
    assert "+corral.spawn(job)" in fix.stdout
    assert "-sched.scheduler()" not in fix.stdout  # no codemod for an organisation rule


def test_organisation_rule_can_ban_a_method_on_traced_loops(tmp_path: Path) -> None:
    rules = ORG_RULES.replace("targets: [sched.scheduler]", "methods: [call_at]").replace(
        """            from sched import scheduler as Every
            Every()
          expect: ["1:19 ORG101", "2:1 ORG101"]""",
        """            import asyncio
            asyncio.get_running_loop().call_at(1, f)
          expect: ["2:1 ORG101"]""",
    )
    write(
        tmp_path,
        **{
            "r.yaml": rules,
            "pyproject.toml": '[tool.corral]\nrule-files = ["r.yaml"]\n',
            "app.py": "import asyncio as aio\nloop = aio.get_event_loop()\nloop.call_at(1, f)\n",
        },
    )
    check = run_corral("check", "--format", "json", "app.py", cwd=tmp_path)
    assert [(r["line"], r["code"]) for r in json.loads(check.stdout)] == [(3, "ORG101")]
    assert run_corral("rules", "--test", cwd=tmp_path).returncode == 0
    # a method a built-in example uses freely: rules --test shows the clash with the catalogue
    clash = rules.replace("call_at", "call_later")
    (tmp_path / "r.yaml").write_text(clash)
    tested = run_corral("rules", "--test", cwd=tmp_path)
    assert tested.returncode == 1 and "CRL203 valid example" in tested.stdout
    taken = rules.replace("methods: [call_at]", "methods: [create_task]")
    (tmp_path / "r.yaml").write_text(taken)
    refused = run_corral("check", cwd=tmp_path)
    assert refused.returncode == 2
    assert "loop.create_task is already listed by CRL203" in refused.stderr
