"""``corral server`` and the project-wide subclass index, the inline check and its timings,
driven as a subprocess by a real LSP client."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsphelpers import Session, capabilities, lsp_session
from lsprotocol import types as lsp
from test_server import FAST, JOBS
from test_server import anyio_backend as anyio_backend  # the fixture: asyncio only
from test_subclass_index import WORKERS

pytestmark = pytest.mark.anyio

APP = "from .workers import Poller\nfrom . import workers\n\nPoller().start()\nworkers.Crunch()\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "svc"\n\n[tool.corral]\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "workers.py").write_text(WORKERS)
    (tmp_path / "pkg" / "app.py").write_text(APP)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "jobs.py").write_text(JOBS)
    return tmp_path


def _latest(s: Session, uri: str) -> list[tuple[int, str]]:
    published = s.published.get(uri, [])
    if not published:
        return []
    return sorted((d.range.start.line, str(d.code)) for d in published[-1].diagnostics)


async def test_subclasses_from_other_modules_and_unsaved_edits_to_them(project: Path) -> None:
    async with lsp_session(project, options=FAST) as s:
        app = s.uri("pkg/app.py")
        s.open("pkg/app.py")
        # the index is built in the background; the app is checked again once it is there
        want = [(3, "CRL101"), (4, "CRL102")]
        await s.wait_for("the index's findings", lambda: _latest(s, app) == want)
        message = s.published[app][-1].diagnostics[0].message
        assert message.startswith("instance of `Poller`, a subclass of `threading.Thread`")

        # an unsaved edit to the defining module: Poller is no thread any more
        workers = s.open("pkg/workers.py")
        s.change(workers, WORKERS.replace("class Poller(threading.Thread):", "class Poller:"))
        await s.wait_for("the edit seen by the importer", lambda: _latest(s, app) == want[1:])
        # and back again
        s.change(workers, WORKERS)
        await s.wait_for("the edit undone", lambda: _latest(s, app) == want)
        # an unsaved edit closed without saving: the module on disk counts again
        s.change(workers, WORKERS.replace("class Poller(threading.Thread):", "class Poller:"))
        await s.wait_for("the edit seen again", lambda: _latest(s, app) == want[1:])
        s.client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=workers))
        )
        await s.wait_for("the disk's module after close", lambda: _latest(s, app) == want)


async def test_pull_clients_are_asked_to_pull_again_when_the_index_arrives(
    project: Path,
) -> None:
    async with lsp_session(project, caps=capabilities(pull=True), options=FAST) as s:
        app = s.open("pkg/app.py")
        await s.wait_for("a refresh request", lambda: s.refreshes >= 1)
        report = await s.pull(app)
        assert sorted((d.range.start.line, d.code) for d in report.items) == [
            (3, "CRL101"),
            (4, "CRL102"),
        ]


async def test_timings_per_stage_are_logged_on_request(project: Path) -> None:
    async with lsp_session(project, options=FAST, env={"CORRAL_SERVER_TIMING": "1"}) as s:
        uri = s.open("app/jobs.py")
        await s.next_diagnostics(uri, 1)
        s.change(uri, JOBS + "\n")
        await s.next_diagnostics(uri, 2)

        def timed() -> list[str]:
            return [m.message for m in s.logs if m.message.startswith("corral timing (ms):")]

        # the last line may be a republish served from the memo (when the project index
        # arrives after the edit), which parses nothing: take the edit's own check
        await s.wait_for("a timing line", lambda: [t for t in timed() if " parse " in t])
        line = [t for t in timed() if " parse " in t][-1]
        for stage in ("sync", "config", "prefilter", "parse", "resolve", "serialize", "total"):
            assert f" {stage} " in line, line
        assert all(" sync " in t and " total " in t for t in timed())
        assert all(m.type == lsp.MessageType.Log for m in s.logs if m.message in timed())


async def test_newer_syntax_and_large_buffers_are_checked_off_the_loop(project: Path) -> None:
    """Text only the LibCST fallback reads (a ``type`` alias on 3.11), and a buffer too large
    for the inline path, get their diagnostics from the checker thread."""
    async with lsp_session(project, options=FAST) as s:
        uri = s.open("app/jobs.py", "type Alias = int\n" + JOBS)
        newer = await s.next_diagnostics(uri, 1)
        assert [str(d.code) for d in newer] == ["CRL201", "CRL201"]
        spawns = [i + 1 for i, line in enumerate(JOBS.splitlines()) if "create_task" in line]
        assert [d.range.start.line for d in newer] == spawns
        large = JOBS + "x = 1\n" * 40_000  # above INLINE_MAX_CHARS
        s.change(uri, large)
        assert [str(d.code) for d in await s.next_diagnostics(uri, 2)] == ["CRL201", "CRL201"]


@pytest.mark.parametrize("source", ["pipe", "empty file", "/dev/null"])
def test_end_of_input_ends_the_server_whatever_stdin_is(tmp_path: Path, source: str) -> None:
    """A pipe is read on the event loop, a file or device through pygls's reader; either
    way the end of input ends the server cleanly."""
    import subprocess

    from lsphelpers import corral_command

    if source == "pipe":
        done = subprocess.run(
            corral_command(), input=b"", capture_output=True, cwd=tmp_path, timeout=60
        )
    else:
        path = Path("/dev/null") if source == "/dev/null" else tmp_path / "input"
        if source == "empty file":
            path.write_bytes(b"")
        with path.open("rb") as stdin:
            done = subprocess.run(
                corral_command(), stdin=stdin, capture_output=True, cwd=tmp_path, timeout=60
            )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr


async def test_a_module_changed_on_disk_updates_the_index(project: Path) -> None:
    """Python files are watched: a defining module rewritten outside the editor (a checkout)
    reaches the open documents importing it, without reloading the configuration."""
    async with lsp_session(project, options=FAST) as s:
        await s.wait_for("file watchers", lambda: s.registrations)
        options = s.registrations[0].register_options
        assert isinstance(options, dict)
        assert "**/*.py" in [w["globPattern"] for w in options["watchers"]]
        app = s.open("pkg/app.py")
        want = [(3, "CRL101"), (4, "CRL102")]
        await s.wait_for("the index's findings", lambda: _latest(s, app) == want)
        workers = project / "pkg" / "workers.py"
        workers.write_text(
            WORKERS.replace("class Crunch(multiprocessing.Process):", "class Crunch:")
        )
        s.client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                changes=[lsp.FileEvent(uri=workers.as_uri(), type=lsp.FileChangeType.Changed)]
            )
        )
        await s.wait_for("the change on disk", lambda: _latest(s, app) == want[:1])
