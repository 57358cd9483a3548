"""``corral server`` driven as a subprocess by a real LSP client (pygls's LanguageClient).

Each test starts the server, speaks the protocol over stdio, and checks what an editor would
see: diagnostics, their ranges and links, code actions and the edits they make (compared
with what ``corral fix`` writes), hovers, configuration reloads, errors and shutdown.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from corral.lint_rules.explain import rule_url
from lsphelpers import (
    apply_text_edits,
    capabilities,
    corral_command,
    edits_for,
    lsp_session,
)
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

pytestmark = pytest.mark.anyio

FAST = {"corral": {"debounce": 20}}

JOBS = textwrap.dedent(
    """\
    import asyncio


    async def job(n: int) -> None:
        await asyncio.sleep(n)


    async def main() -> None:
        asyncio.create_task(job(1))
        kept = asyncio.create_task(job(2))
        await kept
    """
)


@pytest.fixture
def anyio_backend() -> str:
    """pygls's client runs on asyncio; the server under test is a separate process."""
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "svc"\n\n[tool.corral]\n')
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "jobs.py").write_text(JOBS)
    return tmp_path


def corral_fix(root: Path, name: str, text: str) -> str:
    """What ``corral fix`` writes for ``text`` as the file ``name`` (on a copy of the project)."""
    copy = root.parent / f"{root.name}-fix"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(root, copy)
    (copy / name).write_text(text)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "corral"), "fix", name],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return (copy / name).read_text()


def codes(diagnostics: list[lsp.Diagnostic]) -> list[tuple[str, int]]:
    return [(str(d.code), d.range.start.line) for d in diagnostics]


async def test_open_change_fix_save_configure_and_shutdown(project: Path) -> None:
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        first = await s.next_diagnostics(uri, 1)
        assert codes(first) == [("CRL201", 8), ("CRL201", 9)]
        spawn = first[0]
        # the range is the banned expression, not the line
        assert (spawn.range.start.character, spawn.range.end.character) == (4, 23)
        assert spawn.range.start.line == spawn.range.end.line == 8
        assert spawn.source == "corral"
        assert spawn.severity == lsp.DiagnosticSeverity.Error
        assert spawn.code_description is not None
        assert spawn.code_description.href == rule_url("CRL201")
        assert spawn.message.startswith("`asyncio.create_task`")
        assert "(use: corral.spawn" in spawn.message
        assert isinstance(spawn.data, dict) and spawn.data["fixable"] is True

        # change: a line inserted above moves both findings down
        edited = "# header\n" + JOBS
        s.change(uri, edited)
        moved = await s.next_diagnostics(uri, 2)
        assert codes(moved) == [("CRL201", 9), ("CRL201", 10)]
        assert s.published[uri][1].version == 2

        # code actions on the fire-and-forget call: fix, suppress, explain
        actions = await s.code_actions(uri, [moved[0]])
        titles = [a.title for a in actions]
        assert titles == [
            "Rewrite to corral.spawn (CRL201)",
            "Suppress CRL201 with a reason",
            "Explain CRL201",
        ]
        fix = actions[0]
        assert fix.kind == lsp.CodeActionKind.QuickFix and fix.is_preferred
        assert fix.edit is not None
        change = fix.edit.document_changes[0]  # type: ignore[index]
        assert isinstance(change, lsp.TextDocumentEdit)
        assert change.text_document.version == 2
        fixed = apply_text_edits(edited, edits_for(fix.edit, uri))
        assert fixed == corral_fix(project, "app/jobs.py", edited)
        assert "corral.spawn(job, 1)" in fixed and "import corral\n" in fixed

        # the kept task has no fix (the result is assigned), but can be suppressed
        kept_actions = await s.code_actions(uri, [moved[1]])
        assert [a.title for a in kept_actions] == [
            "Suppress CRL201 with a reason",
            "Explain CRL201",
        ]

        # apply the edit: the client sends the new text, the fixed call is gone
        s.change(uri, fixed)
        after_fix = await s.next_diagnostics(uri, 3)
        assert [str(d.code) for d in after_fix] == ["CRL201"]
        assert "kept = asyncio.create_task" in fixed.splitlines()[after_fix[0].range.start.line]

        # save publishes at once (no debounce needed)
        s.save(uri)
        saved = await s.next_diagnostics(uri, 4)
        assert codes(saved) == codes(after_fix)

        # configuration from the editor: ignore CRL201
        s.client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"corral": {"ignore": ["CRL201"]}})
        )
        ignored = await s.next_diagnostics(uri, 5)
        assert ignored == []
        assert not s.shown, s.shown


async def test_pyproject_change_on_disk_reloads_allow_globs_and_baseline(project: Path) -> None:
    async with lsp_session(project, options=FAST) as s:
        await s.wait_for("file watchers", lambda: s.registrations)
        registration = s.registrations[0]
        assert registration.method == lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES
        options = registration.register_options
        assert isinstance(options, dict)
        globs = [w["globPattern"] for w in options["watchers"]]
        assert "**/pyproject.toml" in globs

        uri = s.open("app/jobs.py")
        assert len(await s.next_diagnostics(uri, 1)) == 2

        pyproject = project / "pyproject.toml"
        pyproject.write_text('[tool.corral.allow]\nCRL201 = ["app/**"]\n')
        s.client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                changes=[lsp.FileEvent(uri=pyproject.as_uri(), type=lsp.FileChangeType.Changed)]
            )
        )
        assert await s.next_diagnostics(uri, 2) == []

        # a baseline accepted by `corral baseline` turns the findings into hints
        pyproject.write_text("[tool.corral]\n")
        done = subprocess.run(
            [corral_command()[0], "baseline"], cwd=project, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        s.client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                changes=[
                    lsp.FileEvent(
                        uri=(project / ".corral-baseline.json").as_uri(),
                        type=lsp.FileChangeType.Created,
                    )
                ]
            )
        )
        hints = await s.next_diagnostics(uri, 3)
        assert [d.severity for d in hints] == [lsp.DiagnosticSeverity.Hint] * 2
        assert all(d.message.endswith("[in the baseline]") for d in hints)

        # a new copy of a baselined line is a new finding, an error again
        s.change(uri, JOBS + "\n\nasync def more() -> None:\n    asyncio.create_task(job(1))\n")
        mixed = await s.next_diagnostics(uri, 4)
        assert [d.severity for d in mixed] == [
            lsp.DiagnosticSeverity.Hint,
            lsp.DiagnosticSeverity.Hint,
            lsp.DiagnosticSeverity.Error,
        ]

        # the editor may hide baselined findings altogether
        s.client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"corral": {"baselined": "hide"}})
        )
        assert codes(await s.next_diagnostics(uri, 5)) == [("CRL201", 14)]


async def test_settings_pulled_from_the_client_when_the_notification_has_none(
    project: Path,
) -> None:
    (project / "app" / "groups.py").write_text(
        "import asyncio\n\n\nasync def main() -> None:\n"
        "    async with asyncio.TaskGroup() as g:\n        g.create_task(main())\n"
    )
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/groups.py")
        assert await s.next_diagnostics(uri, 1) == []  # CRL204 is a strict-level rule
        s.configuration = {"strict": True}
        s.client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=None))
        assert codes(await s.next_diagnostics(uri, 2)) == [("CRL204", 4)]


async def test_pull_diagnostics_and_refresh_when_the_client_pulls(project: Path) -> None:
    async with lsp_session(project, caps=capabilities(pull=True), options=FAST) as s:
        uri = s.open("app/jobs.py")
        report = await s.pull(uri)
        assert isinstance(report, lsp.RelatedFullDocumentDiagnosticReport)
        assert codes(list(report.items)) == [("CRL201", 8), ("CRL201", 9)]
        again = await s.pull(uri, report.result_id)
        assert isinstance(again, lsp.RelatedUnchangedDocumentDiagnosticReport)
        assert again.result_id == report.result_id

        s.change(uri, JOBS.replace("    asyncio.create_task(job(1))\n", ""))
        changed = await s.pull(uri, report.result_id)
        assert isinstance(changed, lsp.RelatedFullDocumentDiagnosticReport)
        assert codes(list(changed.items)) == [("CRL201", 8)]

        s.client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"corral": {"ignore": ["CRL2"]}})
        )
        await s.wait_for("a diagnostic refresh", lambda: s.refreshes == 1)
        cleared = await s.pull(uri, changed.result_id)
        assert isinstance(cleared, lsp.RelatedFullDocumentDiagnosticReport)
        assert list(cleared.items) == []
        s.save(uri)
        await s.pull(uri)
        assert s.publications(uri) == 0  # a pulling client is never pushed to


async def test_fix_all_resolves_to_exactly_what_corral_fix_writes(project: Path) -> None:
    source = textwrap.dedent(
        """\
        \"\"\"Jobs.\"\"\"

        import asyncio
        import threading


        def work(a: int, k: int = 0) -> None:
            pass


        async def job(n: int) -> None:
            pass


        async def main() -> None:
            asyncio.create_task(job(1))
            asyncio.ensure_future(job(2))
            threading.Thread(target=work, args=(1,), kwargs={"k": 2}).start()
            kept = asyncio.create_task(job(3))
            await kept
        """
    )
    (project / "app" / "many.py").write_text(source)
    expected = corral_fix(project, "app/many.py", source)
    assert expected != source
    async with lsp_session(project, caps=capabilities(resolve=True), options=FAST) as s:
        uri = s.open("app/many.py")
        found = await s.next_diagnostics(uri, 1)
        assert len(found) == 4
        actions = await s.code_actions(uri, [], only=["source.fixAll"])
        assert [a.title for a in actions] == ["Fix all corral autofixable findings"]
        lazy = actions[0]
        assert lazy.kind == "source.fixAll.corral"
        assert lazy.edit is None  # computed on resolve, not on the request
        resolved = await s.client.code_action_resolve_async(lazy)
        assert resolved.edit is not None
        assert apply_text_edits(source, edits_for(resolved.edit, uri)) == expected

        # one finding's quick fix rewrites that call only
        quick = await s.code_actions(uri, [found[1]])
        assert quick[0].title == "Rewrite to corral.spawn (CRL202)"
        one = await s.client.code_action_resolve_async(quick[0])
        assert one.edit is not None
        text = apply_text_edits(source, edits_for(one.edit, uri))
        assert "corral.spawn(job, 2)" in text and "asyncio.create_task(job(1))" in text

        # a stale resolve (the document changed since) makes no edit
        s.change(uri, source + "\n")
        await s.next_diagnostics(uri, 2)
        stale = await s.client.code_action_resolve_async(quick[0])
        assert stale.edit is None


async def test_suppress_puts_the_cursor_in_the_reason(project: Path) -> None:
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        found = await s.next_diagnostics(uri, 1)
        actions = await s.code_actions(uri, [found[1]])
        suppress = next(a for a in actions if a.title.startswith("Suppress"))
        assert suppress.edit is not None
        text = apply_text_edits(JOBS, edits_for(suppress.edit, uri))
        line = text.splitlines()[9]
        assert line == '    kept = asyncio.create_task(job(2))  # corral: allow[CRL201] reason=""'
        # no snippet support: the command moves the cursor between the quotes
        assert suppress.command is not None
        assert suppress.command.command == "corral.placeCursor"
        await s.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(
                command=suppress.command.command, arguments=suppress.command.arguments
            )
        )
        await s.wait_for("showDocument", lambda: s.documents_shown)
        cursor = s.documents_shown[0].selection
        assert cursor is not None
        assert (cursor.start.line, cursor.start.character) == (9, len(line) - 1)

        # an empty reason is itself a finding (CRL902); a written one passes
        s.change(uri, text)
        assert codes(await s.next_diagnostics(uri, 2)) == [("CRL201", 8), ("CRL902", 9)]
        s.change(uri, text.replace('reason=""', 'reason="awaited below"'))
        assert codes(await s.next_diagnostics(uri, 3)) == [("CRL201", 8)]


async def test_suppress_with_snippet_support_and_on_a_line_with_a_comment(project: Path) -> None:
    source = JOBS.replace("job(1))\n", "job(1))  # first\n")
    async with lsp_session(project, caps=capabilities(snippets=True), options=FAST) as s:
        uri = s.open("app/jobs.py", source)
        found = await s.next_diagnostics(uri, 1)
        actions = await s.code_actions(uri, [found[0]])
        suppress = next(a for a in actions if a.title.startswith("Suppress"))
        assert suppress.command is None
        edit = edits_for(suppress.edit, uri)[0]  # type: ignore[arg-type]
        assert isinstance(edit, lsp.SnippetTextEdit)
        # the line has a comment: the suppression goes alone on the line above
        assert (edit.range.start.line, edit.range.start.character) == (8, 0)
        assert edit.snippet.value == '    # corral: allow[CRL201] reason="$0"\n'


async def test_hover_and_explain_show_corral_explain(project: Path) -> None:
    explained = subprocess.run(
        [corral_command()[0], "explain", "CRL201"], cwd=project, capture_output=True, text=True
    ).stdout
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        found = await s.next_diagnostics(uri, 1)
        hover = await s.client.text_document_hover_async(
            lsp.HoverParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=8, character=10),
            )
        )
        assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
        assert explained in hover.contents.value
        assert rule_url("CRL201") in hover.contents.value
        assert hover.range == found[0].range
        nothing = await s.client.text_document_hover_async(
            lsp.HoverParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=0, character=0),
            )
        )
        assert nothing is None

        actions = await s.code_actions(uri, [found[0]])
        command = next(a for a in actions if a.title == "Explain CRL201").command
        assert command is not None
        text = await s.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=command.command, arguments=command.arguments)
        )
        assert text == explained
        await s.wait_for("the explanation", lambda: s.shown)
        assert s.shown[-1].message == explained


async def test_unparsable_buffer_gives_crl901_on_its_line_and_serving_goes_on(
    project: Path,
) -> None:
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        await s.next_diagnostics(uri, 1)
        broken = JOBS.replace("await kept", "await kept)")
        s.change(uri, broken)
        diagnostics = await s.next_diagnostics(uri, 2)
        assert codes(diagnostics) == [("CRL901", 10)]
        assert diagnostics[0].range.end.line == 10
        assert diagnostics[0].range.end.character == len("    await kept)")
        s.change(uri, JOBS)
        assert len(await s.next_diagnostics(uri, 3)) == 2


async def test_ranges_count_utf16_code_units(project: Path) -> None:
    source = (
        'import asyncio\n\n\nasync def main() -> None:\n    x = "😋"; asyncio.create_task(main())\n'
    )
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/emoji.py", source)
        (found,) = await s.next_diagnostics(uri, 1)
        # 😋 is one character but two UTF-16 code units
        prefix = '    x = "😋"; '
        assert found.range.start.character == len(prefix) + 1
        assert found.range.end.character == len(prefix) + 1 + len("asyncio.create_task")


async def test_excluded_files_and_closed_documents_have_no_diagnostics(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.corral]\nextend-exclude = ["vendor"]\n')
    (project / "vendor").mkdir()
    (project / "vendor" / "lib.py").write_text(JOBS)
    async with lsp_session(project, options=FAST) as s:
        vendored = s.open("vendor/lib.py")
        assert await s.next_diagnostics(vendored, 1) == []
        uri = s.open("app/jobs.py")
        assert len(await s.next_diagnostics(uri, 1)) == 2
        s.client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )
        assert await s.next_diagnostics(uri, 2) == []


async def test_broken_configuration_is_reported_once_and_the_server_recovers(
    project: Path,
) -> None:
    (project / "pyproject.toml").write_text("[tool.corral]\nselct = ['CRL']\n")
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        assert await s.next_diagnostics(uri, 1) == []
        s.change(uri, JOBS + "\n")
        assert await s.next_diagnostics(uri, 2) == []
        errors = [m for m in s.shown if "unknown key 'selct'" in m.message]
        assert len(errors) == 1 and errors[0].type == lsp.MessageType.Error
        assert "did you mean 'select'" in errors[0].message
        (project / "pyproject.toml").write_text("[tool.corral]\n")
        s.save(uri)  # the stat of pyproject.toml tells it changed, even without a watcher
        assert len(await s.next_diagnostics(uri, 3)) == 2


async def test_invalid_editor_setting_is_reported_and_the_old_ones_kept(project: Path) -> None:
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        await s.next_diagnostics(uri, 1)
        s.client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"corral": {"strict": "yes"}})
        )
        await s.wait_for("the settings error", lambda: s.shown)
        assert "corral.strict must be true or false" in s.shown[0].message
        s.change(uri, JOBS + "\n")
        assert len(await s.next_diagnostics(uri, 2)) == 2


CRASHING_SERVER = """
import sys
import corral.lint_rules.fixes as fixes
import corral.lint_rules.server as server

def fix_source(*args, **kwargs):
    raise RuntimeError("provoked failure in a fix")

checked = server.check_buffer

def check_buffer(loaded, path, text, **kwargs):
    if "PROVOKE" in text:
        raise RuntimeError("provoked failure in a check")
    return checked(loaded, path, text, **kwargs)

fixes.fix_source = fix_source
server.check_buffer = check_buffer
from corral.lint_rules.cli import main
sys.exit(main(["server"]))
"""


async def test_a_crash_in_a_request_is_logged_and_never_kills_the_server(project: Path) -> None:
    command = [sys.executable, "-c", CRASHING_SERVER]
    async with lsp_session(project, command=command, options=FAST) as s:
        uri = s.open("app/jobs.py")
        found = await s.next_diagnostics(uri, 1)
        with pytest.raises(JsonRpcException, match="provoked failure in a fix"):
            await s.code_actions(uri, [found[0]])
        await s.wait_for("the logged crash", lambda: any("fix" in m.message for m in s.logs))
        logged = next(m for m in s.logs if "provoked failure in a fix" in m.message)
        assert logged.type == lsp.MessageType.Error
        assert "Traceback" in logged.message and "fix_source" in logged.message

        # a crash on the diagnostics path (a notification) is logged too
        s.change(uri, JOBS + "# PROVOKE\n")
        await s.wait_for(
            "the logged check crash", lambda: any("check" in m.message for m in s.logs)
        )
        # and the server still serves: the next edit gets its diagnostics
        s.change(uri, JOBS)
        assert len(await s.next_diagnostics(uri, 2)) == 2


def test_server_without_the_lsp_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['pygls'] = None\n"
        "from corral.lint_rules.cli import main\n"
        "sys.exit(main(['server']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "corral server needs the lsp extra" in lines[0]
    assert "pip install 'corral[lsp]'" in lines[0]


async def test_invalid_initialization_options_are_reported_and_defaults_used(
    project: Path,
) -> None:
    async with lsp_session(project, options={"corral": {"baselined": "maybe"}}) as s:
        await s.wait_for("the settings error", lambda: s.shown)
        assert 'corral.baselined must be "hint" or "hide"' in s.shown[0].message
        uri = s.open("app/jobs.py")
        assert len(await s.next_diagnostics(uri, 1)) == 2


async def test_no_suppress_rules_are_not_offered_a_suppression(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.corral]\nno-suppress = ["CRL201"]\n')
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py")
        found = await s.next_diagnostics(uri, 1)
        titles = [a.title for a in await s.code_actions(uri, [found[1]])]
        assert titles == ["Explain CRL201"]
