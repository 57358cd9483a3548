"""``corral server``: the linter as a language server (LSP over stdio, built on pygls).

Diagnostics come from the same engine and configuration resolution as ``corral check``
(see buffers.py). They are pushed on open, save and (debounced) change to clients that do
not pull, and answered on ``textDocument/diagnostic`` for clients that do.

Where the work runs: the common check (the project loaded, a buffer of at most
``INLINE_MAX_CHARS``, the stdlib parser enough) runs on the protocol loop itself, which is
cheaper than any hand-off (a 1,000-line file takes milliseconds). Everything that may take
longer runs on the checker thread: loading a project, larger buffers, text only the LibCST
fallback can read (syntax newer than this Python), and quick fixes (LibCST, through
fixes.py, the code ``corral fix`` runs), computed only when a client asks for one. The
project-wide subclass index is built on a thread of its own (project_index.py, through the
results cache) after the first document of a project opens, rebuilt when a Python file is
saved, and updated from the open buffers' own subclasses as they are edited; no check ever
waits for it. With ``CORRAL_SERVER_TIMING=1`` in its environment the server logs the time
each check spent per stage (window/logMessage).

Needs the ``lsp`` extra (``pip install 'corral[lsp]'``); nothing else imports this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as lsp
from pygls.io_ import StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from .buffers import Checked, Loaded, Projects, check_buffer
from .catalogue import Catalogue, CatalogueError
from .config import ConfigError, package_version
from .edits import Edit, Insertion, line_edits, suppression_insertion
from .explain import DOCS_URL, explain, find_rule, rule_url
from .findings import Finding
from .fix_triage import FIXABLE, needs_codemod
from .packages import module_name, package_of
from .project import Selection
from .project_index import project_index
from .resolver import Exports
from .source import split_lines

__all__ = ["CorralServer", "Settings", "build_server", "serve"]

T = TypeVar("T")
FIX_ALL = f"{lsp.CodeActionKind.SourceFixAll.value}.corral"
EXPLAIN_COMMAND = "corral.explain"
CURSOR_COMMAND = "corral.placeCursor"
WATCHED = ("**/pyproject.toml", "**/.corral-baseline.json", "**/*baseline*.json", "**/*.py")
META = "CRL9"  # unreadable files and suppression problems: fixed, never suppressed
INLINE_MAX_CHARS = 128 * 1024  # larger buffers are checked on the checker thread
TIMING = "CORRAL_SERVER_TIMING"  # set to 1: log each check's time per stage


class SettingsError(ValueError):
    """An editor setting has the wrong type; the message names it."""


@dataclass(frozen=True)
class Settings:
    """What an editor may set (``initializationOptions`` or the ``corral`` settings section)."""

    selection: Selection = field(default_factory=Selection)
    config: Path | None = None  # like --config: one pyproject.toml for every file
    baselined: str = "hint"  # "hint": show baselined findings as hints; "hide": do not show
    debounce: float = 0.15  # seconds after the last change before a pushed check
    docs_url: str = DOCS_URL

    @classmethod
    def parse(cls, raw: object) -> Settings:
        """Settings from the client's JSON (a ``corral`` section or its content)."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise SettingsError("corral settings must be an object")
        raw = raw.get("corral", raw)
        if not isinstance(raw, dict):
            raise SettingsError("corral settings must be an object")

        def codes(key: str) -> list[str] | None:
            value = raw.get(key)
            if value is None:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"corral.{key} must be a list of rule codes")
            return [v.strip().upper() for v in value if v.strip()]

        strict = raw.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise SettingsError("corral.strict must be true or false")
        config = raw.get("config")
        if config is not None and not isinstance(config, str):
            raise SettingsError("corral.config must be the path of a pyproject.toml")
        baselined = raw.get("baselined", "hint")
        if baselined not in ("hint", "hide"):
            raise SettingsError('corral.baselined must be "hint" or "hide"')
        debounce = raw.get("debounce", 150)
        if not isinstance(debounce, (int, float)) or isinstance(debounce, bool) or debounce < 0:
            raise SettingsError("corral.debounce must be a number of milliseconds")
        docs_url = raw.get("docsUrl", DOCS_URL)
        if not isinstance(docs_url, str) or not docs_url:
            raise SettingsError("corral.docsUrl must be a URL")
        selection = Selection(
            select=codes("select"),
            extend_select=codes("extendSelect") or [],
            ignore=codes("ignore"),
            strict=strict,
        )
        return cls(
            selection,
            Path(config).expanduser() if config else None,
            baselined,
            debounce / 1000,
            docs_url,
        )


@dataclass
class Result:
    """A check of one version of a buffer: findings, or the configuration error."""

    findings: Sequence[Checked] = ()
    catalogue: Catalogue | None = None
    error: str = ""
    no_suppress: frozenset[str] = frozenset()  # rules the policy allows no inline exception
    index_changed: bool = False  # the buffer's own subclasses changed: recheck the others

    def suppressible(self, code: str) -> bool:
        return not code.startswith(META) and code not in self.no_suppress


@dataclass
class DocState:
    edits: int = 0  # changes seen: a debounced check runs only for the last of a burst


class Checker:
    """Projects, checks and fixes (no LSP types).

    ``check`` (and everything that loads a project or runs LibCST) runs on the checker
    thread; ``quick_check`` on the protocol loop, for a project already loaded, never
    waiting on a read or on LibCST. A settings change bumps ``projects.generation``, so a
    check that raced with it is not memoised.
    """

    def __init__(self) -> None:
        self.projects = Projects()
        self.memo: dict[str, tuple[tuple[int, str], Loaded, int, Result]] = {}
        self.timings: dict[str, float] | None = {} if os.environ.get(TIMING) == "1" else None

    def configure(self, settings: Settings) -> None:
        self.projects.configure(settings.selection, settings.config)
        self.memo.clear()

    def clear(self) -> None:
        self.projects.clear()
        self.memo.clear()

    def check(self, uri: str, path: Path, version: int, text: str) -> Result:
        """The findings for this version of the buffer, memoised until the text or the
        project (its pyproject.toml or baseline on disk, the settings, its index) changes."""
        try:
            loaded = self.projects.for_file(path)
        except (ConfigError, CatalogueError) as exc:
            self.memo.pop(uri, None)
            return Result(error=str(exc))
        result = self._check(uri, loaded, path, version, text, fallback=True)
        assert result is not None  # with the fallback every text gets an answer
        return result

    def quick_check(self, uri: str, path: Path, version: int, text: str) -> Result | None:
        """``check`` when it needs neither LibCST nor reading a project, and the buffer is
        small (cheap enough for the protocol loop itself); None when it needs either."""
        if len(text) > INLINE_MAX_CHARS:
            return None
        started = time.perf_counter()
        loaded = self.projects.loaded(path)
        self._time("config", started)
        if loaded is None:
            return None
        return self._check(uri, loaded, path, version, text, fallback=False)

    def _check(
        self, uri: str, loaded: Loaded, path: Path, version: int, text: str, *, fallback: bool
    ) -> Result | None:
        generation = self.projects.generation
        memo = self.memo.get(uri)
        key = (version, text)
        if memo is not None and memo[:3] == (key, loaded, loaded.index_version):
            return memo[3]
        if loaded.is_excluded(path):
            result = Result(catalogue=loaded.project.catalogue)
        else:
            project = loaded.project
            exports: Exports = {}
            found = check_buffer(
                loaded, path, text, fallback=fallback, exports=exports, timings=self.timings
            )
            if found is None:
                return None
            result = Result(found, project.catalogue, no_suppress=project.rules.no_suppress)
            result.index_changed = self._note_exports(loaded, path, exports)
        if generation == self.projects.generation:  # no settings change meanwhile
            self.memo[uri] = (key, loaded, loaded.index_version, result)
        return result

    def _note_exports(self, loaded: Loaded, path: Path, exports: Exports) -> bool:
        """Keep the buffer's own subclasses for the modules importing it; True if they
        differ from what those modules saw so far."""
        if not loaded.project.rules.subclass_codes or not loaded.index_requested:
            return False
        module = module_name(path, package_of(str(path)))
        if loaded.subclasses().get(module, {}) == exports:
            return False
        loaded.overlay[module] = exports
        loaded.index_version += 1
        return True

    def forget(self, path: Path) -> bool:
        """A buffer closed: its module is what is on disk again for the modules importing
        it (an unsaved edit no longer counts); True if that changes what they see."""
        loaded = self.projects.loaded(path)
        if loaded is None:
            return False
        if loaded.overlay.pop(module_name(path, package_of(str(path))), None) is None:
            return False
        loaded.index_version += 1
        return True

    def _time(self, stage: str, started: float) -> None:
        if self.timings is not None:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started

    def take_timings(self) -> dict[str, float]:
        """The stage timings gathered since the last call (empty unless timing is on)."""
        taken = dict(self.timings or {})
        if self.timings is not None:
            self.timings.clear()
        return taken

    def could_fix(self, text: str, findings: Sequence[Finding]) -> bool:
        """Whether ``corral fix`` must run LibCST for these findings (``ast`` triage only)."""
        return needs_codemod(text, findings)[0]

    def fix(self, path: Path, text: str, findings: Sequence[Finding], only: Finding | None) -> str:
        """The file as ``corral fix`` would write it (only ``only``, if given, rewritten).

        fixes.py (and LibCST) is imported here, on the checker thread, on the first request.
        """
        from . import fixes

        return fixes.fix_source(text, str(path), findings, only=only).after

    def catalogue(self, root: Path) -> Catalogue | str:
        """The catalogue of the project at ``root``, or why it cannot be loaded."""
        try:
            return self.projects.for_file(root / "untitled.py").project.catalogue
        except (ConfigError, CatalogueError) as exc:
            return str(exc)


class CorralServer(LanguageServer):
    """The pygls server with corral's state: settings, open documents, the checker thread."""

    def __init__(self) -> None:
        super().__init__("corral", package_version())
        self.settings = Settings()
        self.checker = Checker()
        self.documents: dict[str, DocState] = {}
        self.reported: set[str] = set()
        self.pending_error = ""
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._index_pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- the checker and index threads --------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the checker thread (one at a time, in order) and await its result."""
        if self._pool is None:
            # corral: allow[CRL102] reason="the server's one checker thread, shut down on exit"
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "corral-check")
        return await asyncio.wrap_future(self._pool.submit(fn, *args))

    async def run_indexing(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the index thread: a cold index build may take seconds, and no
        check waits for it."""
        if self._index_pool is None:
            # corral: allow[CRL102] reason="the server's one index thread, shut down on exit"
            self._index_pool = concurrent.futures.ThreadPoolExecutor(1, "corral-index")
        return await asyncio.wrap_future(self._index_pool.submit(fn, *args))

    def shutdown(self) -> None:
        for pool in (self._pool, self._index_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        super().shutdown()  # type: ignore[no-untyped-call]

    # -- capabilities -------------------------------------------------------------------
    @property
    def pulls(self) -> bool:
        """Whether the client asks for diagnostics (``textDocument/diagnostic``) itself."""
        document = self.client_capabilities.text_document
        return document is not None and document.diagnostic is not None

    def _workspace_caps(self) -> lsp.WorkspaceClientCapabilities | None:
        return self.client_capabilities.workspace

    @property
    def snippets(self) -> bool:
        edit = (self._workspace_caps() or lsp.WorkspaceClientCapabilities()).workspace_edit
        return bool(edit and edit.snippet_edit_support and edit.document_changes)

    @property
    def document_changes(self) -> bool:
        edit = (self._workspace_caps() or lsp.WorkspaceClientCapabilities()).workspace_edit
        return bool(edit and edit.document_changes)

    @property
    def resolves_edits(self) -> bool:
        document = self.client_capabilities.text_document
        action = document.code_action if document else None
        support = action.resolve_support if action else None
        return bool(support and "edit" in support.properties)

    @property
    def shows_documents(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.show_document and window.show_document.support)

    # -- messages -----------------------------------------------------------------------
    def log(self, message: str, kind: lsp.MessageType = lsp.MessageType.Info) -> None:
        self.window_log_message(lsp.LogMessageParams(type=kind, message=message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Every failure, requests included, goes to the client's log with its traceback;
        the server goes on serving."""
        data = getattr(error, "data", None)
        if isinstance(data, dict) and data.get("traceback"):  # a failed request
            lines = ["Traceback (most recent call last):\n", *data["traceback"], f"{error}\n"]
        else:
            lines = traceback.format_exception(error)
        self.log("corral server error: " + "".join(lines), lsp.MessageType.Error)
        super().report_server_error(error, source)

    def report_once(self, message: str) -> None:
        """A configuration problem, shown once (not on every keystroke) and logged."""
        if message in self.reported:
            return
        self.reported.add(message)
        self.log(f"corral: {message}", lsp.MessageType.Error)
        self.window_show_message(
            lsp.ShowMessageParams(type=lsp.MessageType.Error, message=f"corral: {message}")
        )

    # -- checking -----------------------------------------------------------------------
    def state(self, uri: str) -> DocState:
        return self.documents.setdefault(uri, DocState())

    async def result(self, uri: str) -> tuple[TextDocument, Result]:
        """The check of the document's current text: on this loop when it is cheap (see
        ``Checker.quick_check``), else on the checker thread."""
        started = time.perf_counter()
        document = self.workspace.get_text_document(uri)
        what = (uri, document_path(self, uri), document.version or 0, document.source)
        self.checker._time("sync", started)
        result = self.checker.quick_check(*what)
        if result is None:
            result = await self.run(self.checker.check, *what)
        if result.error:
            self.report_once(result.error)
        if result.index_changed:
            await self.recheck_open(skip=uri)
        return document, result

    async def diagnostics(self, uri: str) -> tuple[TextDocument, list[lsp.Diagnostic]]:
        started = time.perf_counter()
        document, result = await self.result(uri)
        serialized = time.perf_counter()
        lines = split_lines(document.source)
        shown = [
            diagnostic(self, document, lines, c, result.catalogue)
            for c in result.findings
            if not (c.baselined and self.settings.baselined == "hide")
        ]
        if self.checker.timings is not None:
            self.checker._time("serialize", serialized)
            self.checker._time("total", started)
            stages = self.checker.take_timings()
            self.log(
                "corral timing (ms): "
                + " ".join(f"{stage} {seconds * 1000:.2f}" for stage, seconds in stages.items()),
                lsp.MessageType.Log,
            )
        return document, shown

    async def publish(self, uri: str) -> None:
        if self.pulls or uri not in self.documents:
            return
        document, shown = await self.diagnostics(uri)
        current = self.workspace.get_text_document(uri)
        if uri not in self.documents or current.version != document.version:
            return  # a newer edit is on its way and publishes its own result
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=shown, version=document.version)
        )

    async def recheck_all(self) -> None:
        """Configuration changed: publish again, or ask a pulling client to pull again."""
        self.reported.clear()
        await self.run(self.checker.clear)
        await self.recheck_open()
        for uri in list(self.documents):  # the projects were loaded again: so is each index
            await self.index_project(uri)

    async def recheck_open(self, skip: str = "") -> None:
        """What a check depends on changed: publish the open documents again (but ``skip``),
        or ask a pulling client to pull again."""
        if self.pulls:
            workspace = self._workspace_caps()
            diagnostics = workspace.diagnostics if workspace else None
            if diagnostics and diagnostics.refresh_support:
                self.workspace_diagnostic_refresh(None)
            return
        for uri in list(self.documents):
            if uri != skip:
                await self.publish(uri)

    async def reindex_open_projects(self) -> None:
        """Build again the index of every project with an open document (once each)."""
        seen: set[Path] = set()
        for uri in list(self.documents):
            root = self.checker.projects.loaded(document_path(self, uri))
            if root is not None and root.project.config.root not in seen:
                seen.add(root.project.config.root)
                await self.index_project(uri, again=True)

    async def index_project(self, uri: str, *, again: bool = False) -> None:
        """Build (``again``: rebuild) the subclass index of the project ``uri`` belongs to,
        on the index thread; when it changes, check the open documents again."""
        try:
            loaded = await self.run(self.checker.projects.for_file, document_path(self, uri))
        except (ConfigError, CatalogueError):
            return  # reported by the check itself
        if loaded.index_requested and not again:
            return
        loaded.index_requested = True
        try:
            index = await self.run_indexing(partial(project_index, loaded.project, jobs=1))
        except Exception as exc:  # whatever it is: logged, and checks go on without the index
            self.log(f"corral: no subclass index for {loaded.project.config.root}: {exc}")
            return
        if index != loaded.index:
            loaded.index = index
            loaded.index_version += 1
            await self.recheck_open()

    async def apply_settings(self, raw: object) -> None:
        try:
            settings = Settings.parse(raw)
        except SettingsError as exc:
            self.report_once(str(exc))
            return
        self.settings = settings
        await self.run(self.checker.configure, settings)
        await self.recheck_all()


def document_path(server: LanguageServer, uri: str) -> Path:
    """The file a document is (an unsaved buffer is checked as if in the workspace root)."""
    path = to_fs_path(uri)
    if path is None or not uri.startswith("file:"):
        root = server.workspace.root_path or "."
        return Path(root) / "untitled.py"
    return Path(path)


# -- LSP conversions -------------------------------------------------------------------------
def _position(document: TextDocument, lines: list[str], line: int, column: int) -> lsp.Position:
    from pygls.workspace.position_codec import ServerTextPosition

    return document.position_codec.position_to_client_units(lines, ServerTextPosition(line, column))


def finding_range(document: TextDocument, lines: list[str], finding: Finding) -> lsp.Range:
    """The banned expression itself; a finding with no end runs to the end of its line."""
    line = max(finding.line - 1, 0)
    start = (line, max(finding.col - 1, 0))
    if finding.end_line:
        end = (finding.end_line - 1, max(finding.end_col - 1, 0))
    else:
        text = lines[line] if line < len(lines) else ""
        end = (line, max(len(text), start[1]))
    return lsp.Range(start=_position(document, lines, *start), end=_position(document, lines, *end))


def diagnostic(
    server: CorralServer,
    document: TextDocument,
    lines: list[str],
    checked: Checked,
    catalogue: Catalogue | None,
) -> lsp.Diagnostic:
    finding = checked.finding
    rule = catalogue.get(finding.code) if catalogue else None
    replacement = rule.replacement if rule else ""
    message = f"{finding.message} (use: {replacement})" if replacement else finding.message
    severity = lsp.DiagnosticSeverity.Error
    if checked.baselined:
        severity = lsp.DiagnosticSeverity.Hint
        message += " [in the baseline]"
    tags = [lsp.DiagnosticTag.Unnecessary] if finding.code == "CRL903" else None
    description = None
    if rule is not None and catalogue is not None and rule.origin == catalogue.source:
        # built-in rules have a README section; an organisation's rules are explained on hover
        description = lsp.CodeDescription(href=rule_url(finding.code, server.settings.docs_url))
    return lsp.Diagnostic(
        range=finding_range(document, lines, finding),
        message=message,
        severity=severity,
        code=finding.code,
        code_description=description,
        source="corral",
        tags=tags,
        data={
            "key": finding_key(finding),
            "replacement": replacement,
            "baselined": checked.baselined,
            "fixable": finding.code in FIXABLE,
        },
    )


def finding_key(finding: Finding) -> list[object]:
    return [finding.code, finding.line, finding.col, finding.end_line, finding.end_col]


def _edit(document: TextDocument, lines: list[str], edit: Edit) -> lsp.TextEdit:
    return lsp.TextEdit(
        range=lsp.Range(
            start=_position(document, lines, *edit.start),
            end=_position(document, lines, *edit.end),
        ),
        new_text=edit.text,
    )


def workspace_edit(
    server: CorralServer,
    document: TextDocument,
    edits: Sequence[lsp.TextEdit | lsp.SnippetTextEdit],
) -> lsp.WorkspaceEdit:
    if server.document_changes:
        identifier = lsp.OptionalVersionedTextDocumentIdentifier(
            uri=document.uri, version=document.version
        )
        return lsp.WorkspaceEdit(
            document_changes=[lsp.TextDocumentEdit(text_document=identifier, edits=list(edits))]
        )
    plain = [e for e in edits if isinstance(e, lsp.TextEdit)]
    return lsp.WorkspaceEdit(changes={document.uri: plain})


def fix_edit(
    server: CorralServer, document: TextDocument, before: str, after: str
) -> lsp.WorkspaceEdit:
    lines = split_lines(before)
    return workspace_edit(
        server, document, [_edit(document, lines, e) for e in line_edits(before, after)]
    )


def _snippet_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")


def suppress_action(
    server: CorralServer,
    document: TextDocument,
    finding: Finding,
    diagnostics: list[lsp.Diagnostic],
) -> lsp.CodeAction:
    """``# corral: allow[CODE] reason=""`` with the cursor between the quotes."""
    text = document.source
    lines = split_lines(text)
    insertion: Insertion = suppression_insertion(text, finding)
    at = _position(document, lines, *insertion.at)
    where = lsp.Range(start=at, end=at)
    command = None
    if server.snippets:
        snippet = (
            _snippet_escape(insertion.before_cursor)
            + "$0"
            + _snippet_escape(insertion.after_cursor)
        )
        edit: lsp.TextEdit | lsp.SnippetTextEdit = lsp.SnippetTextEdit(
            range=where, snippet=lsp.StringValue(value=snippet)
        )
    else:
        edit = lsp.TextEdit(range=where, new_text=insertion.text)
        if server.shows_documents:
            line, column = insertion.cursor
            after = split_lines(_apply(text, lines, insertion))
            cursor = _position(document, after, line, column)
            command = lsp.Command(
                title="Type the reason",
                command=CURSOR_COMMAND,
                arguments=[document.uri, cursor.line, cursor.character],
            )
    return lsp.CodeAction(
        title=f"Suppress {finding.code} with a reason",
        kind=lsp.CodeActionKind.QuickFix,
        diagnostics=diagnostics,
        edit=workspace_edit(server, document, [edit]),
        command=command,
    )


def _apply(text: str, lines: list[str], insertion: Insertion) -> str:
    line, column = insertion.at
    offset = sum(len(x) + 1 for x in lines[:line]) + column  # only for the cursor's column
    return text[:offset] + insertion.text + text[offset:]


def explain_markdown(catalogue: Catalogue, code: str, docs_url: str) -> str | None:
    rule = find_rule(catalogue, code)
    if rule is None:
        return None
    text = f"**{rule.code}** {rule.name}: {rule.summary}\n\n"
    text += f"```text\n{explain(rule, catalogue.source)}```"
    if rule.origin == catalogue.source:
        text += f"\n\n[Documentation]({rule_url(rule.code, docs_url)})"
    return text


# -- the server ------------------------------------------------------------------------------
def _match(result: Result, key: object) -> Checked | None:
    return next((c for c in result.findings if finding_key(c.finding) == key), None)


def build_server() -> CorralServer:
    server = CorralServer()

    @server.feature(lsp.INITIALIZE)
    async def initialize(ls: CorralServer, params: lsp.InitializeParams) -> None:
        try:
            ls.settings = Settings.parse(params.initialization_options)
        except SettingsError as exc:  # reported once the client is ready (initialized)
            ls.settings, ls.pending_error = Settings(), str(exc)
        await ls.run(ls.checker.configure, ls.settings)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: CorralServer, params: lsp.InitializedParams) -> None:
        if ls.pending_error:
            ls.report_once(ls.pending_error)
        workspace = ls._workspace_caps()
        watch = workspace.did_change_watched_files if workspace else None
        if watch and watch.dynamic_registration:
            options = lsp.DidChangeWatchedFilesRegistrationOptions(
                watchers=[lsp.FileSystemWatcher(glob_pattern=g) for g in WATCHED]
            )
            await ls.client_register_capability_async(
                lsp.RegistrationParams(
                    registrations=[
                        lsp.Registration(
                            id="corral-config-files",
                            method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                            register_options=options,
                        )
                    ]
                )
            )

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: CorralServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.state(params.text_document.uri)
        await ls.publish(params.text_document.uri)
        await ls.index_project(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: CorralServer, params: lsp.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        state = ls.state(uri)
        state.edits += 1
        mine = state.edits
        if ls.pulls:
            return
        await asyncio.sleep(ls.settings.debounce)
        if state.edits == mine:  # the last edit of a burst checks; the others give way
            await ls.publish(uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls: CorralServer, params: lsp.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        if uri.endswith("/pyproject.toml"):
            await ls.recheck_all()
            return
        await ls.publish(uri)
        if uri.endswith((".py", ".pyi")):  # what it defines is now on disk for the index
            await ls.index_project(uri, again=True)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(ls: CorralServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.checker.memo.pop(uri, None)  # a dict pop: safe beside the checker thread
        if ls.documents.pop(uri, None) is not None and not ls.pulls:
            ls.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[])
            )
        if ls.checker.forget(document_path(ls, uri)):
            await ls.recheck_open()

    @server.feature(
        lsp.TEXT_DOCUMENT_DIAGNOSTIC,
        lsp.DiagnosticOptions(
            identifier="corral", inter_file_dependencies=False, workspace_diagnostics=False
        ),
    )
    async def pull(ls: CorralServer, params: lsp.DocumentDiagnosticParams) -> Any:
        _, shown = await ls.diagnostics(params.text_document.uri)
        result_id = hashlib.blake2b(
            repr([(d.code, d.range, d.message, d.severity) for d in shown]).encode(),
            digest_size=8,
        ).hexdigest()
        if params.previous_result_id == result_id:
            return lsp.RelatedUnchangedDocumentDiagnosticReport(result_id=result_id)
        return lsp.RelatedFullDocumentDiagnosticReport(items=shown, result_id=result_id)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: CorralServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        settings = params.settings
        if not settings:
            workspace = ls._workspace_caps()
            if workspace and workspace.configuration:
                answer = await ls.workspace_configuration_async(
                    lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section="corral")])
                )
                settings = answer[0] if answer else None
        await ls.apply_settings(settings)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def did_change_watched_files(
        ls: CorralServer, params: lsp.DidChangeWatchedFilesParams
    ) -> None:
        if params.changes and all(c.uri.endswith(".py") for c in params.changes):
            # modules changed on disk (a checkout, another tool): the subclass index only
            await ls.reindex_open_projects()
            return
        await ls.recheck_all()

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    async def hover(ls: CorralServer, params: lsp.HoverParams) -> lsp.Hover | None:
        document, result = await ls.result(params.text_document.uri)
        if result.catalogue is None:
            return None
        lines = split_lines(document.source)
        at = (params.position.line, params.position.character)
        for checked in result.findings:
            where = finding_range(document, lines, checked.finding)
            if (
                (where.start.line, where.start.character)
                <= at
                <= (
                    where.end.line,
                    where.end.character,
                )
            ):
                text = explain_markdown(
                    result.catalogue, checked.finding.code, ls.settings.docs_url
                )
                if text:
                    return lsp.Hover(
                        contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text),
                        range=where,
                    )
        return None

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION,
        lsp.CodeActionOptions(
            code_action_kinds=[lsp.CodeActionKind.QuickFix, FIX_ALL],
            resolve_provider=True,
        ),
    )
    async def code_action(ls: CorralServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        uri = params.text_document.uri
        document, result = await ls.result(uri)
        only = params.context.only
        actions: list[lsp.CodeAction] = []
        fixable = [c.finding for c in result.findings if c.finding.code in FIXABLE]
        if not only or lsp.CodeActionKind.QuickFix in only:
            for diag in params.context.diagnostics:
                if diag.source != "corral" or not isinstance(diag.data, dict):
                    continue
                checked = _match(result, diag.data.get("key"))
                if checked is None:
                    continue
                finding = checked.finding
                if finding in fixable:
                    action = await _fix_action(ls, document, result, finding, [diag])
                    if action is not None:
                        actions.append(action)
                if result.suppressible(finding.code):
                    actions.append(suppress_action(ls, document, finding, [diag]))
                actions.append(
                    lsp.CodeAction(
                        title=f"Explain {finding.code}",
                        kind=lsp.CodeActionKind.QuickFix,
                        diagnostics=[diag],
                        command=lsp.Command(
                            title=f"Explain {finding.code}",
                            command=EXPLAIN_COMMAND,
                            arguments=[finding.code],
                        ),
                    )
                )
        wants_all = only and any(
            getattr(k, "value", k) in (FIX_ALL, "source.fixAll", "source") for k in only
        )
        if fixable and (wants_all or not only):
            # unasked, "fix all" is offered only when more than one call can be rewritten
            candidates = [
                f for f in fixable if await ls.run(ls.checker.could_fix, document.source, [f])
            ]
            if wants_all or len(candidates) > 1:
                action = await _fix_action(ls, document, result, None, [])
                if action is not None:
                    actions.append(action)
        return actions

    @server.feature(lsp.CODE_ACTION_RESOLVE)
    async def resolve(ls: CorralServer, action: lsp.CodeAction) -> lsp.CodeAction:
        data = action.data if isinstance(action.data, dict) else {}
        if action.edit is not None or "uri" not in data:
            return action
        document, result = await ls.result(data["uri"])
        if document.version != data.get("version"):
            ls.log(f"corral: {action.title}: the document changed; ask again")
            return action
        finding = _match(result, data.get("key")) if data.get("key") else None
        edit = await _compute_fix(ls, document, result, finding.finding if finding else None)
        if edit is None:
            ls.window_show_message(
                lsp.ShowMessageParams(
                    type=lsp.MessageType.Info, message=f"corral: {action.title}: nothing to do"
                )
            )
            return action
        action.edit = edit
        return action

    @server.command(EXPLAIN_COMMAND)
    async def explain_command(ls: CorralServer, code: str) -> str | None:
        root = Path(ls.workspace.root_path or ".")
        catalogue = await ls.run(ls.checker.catalogue, root)
        if isinstance(catalogue, str):
            ls.report_once(catalogue)
            return None
        rule = find_rule(catalogue, code)
        if rule is None:
            ls.window_show_message(
                lsp.ShowMessageParams(type=lsp.MessageType.Warning, message=f"unknown rule {code}")
            )
            return None
        text = explain(rule, catalogue.source)
        ls.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Info, message=text))
        return text

    @server.command(CURSOR_COMMAND)
    async def place_cursor(ls: CorralServer, uri: str, line: int, character: int) -> None:
        at = lsp.Position(line=line, character=character)
        await ls.window_show_document_async(
            lsp.ShowDocumentParams(uri=uri, take_focus=True, selection=lsp.Range(start=at, end=at))
        )

    return server


async def _compute_fix(
    ls: CorralServer, document: TextDocument, result: Result, only: Finding | None
) -> lsp.WorkspaceEdit | None:
    text = document.source
    findings = [c.finding for c in result.findings]
    path = document_path(ls, document.uri)
    after = await ls.run(ls.checker.fix, path, text, findings, only)
    if after == text:
        return None
    return fix_edit(ls, document, text, after)


async def _fix_action(
    ls: CorralServer,
    document: TextDocument,
    result: Result,
    finding: Finding | None,
    diagnostics: list[lsp.Diagnostic],
) -> lsp.CodeAction | None:
    """The autofix for one finding (quick fix) or for the file (``source.fixAll.corral``).

    Clients that resolve code actions get the edit computed on resolve; others get it now,
    and only when ``corral fix`` would rewrite something.
    """
    if finding is None:
        title, kind = "Fix all corral autofixable findings", FIX_ALL
    else:
        name = "corral.sync.spawn" if finding.code == "CRL101" else "corral.spawn"
        title, kind = f"Rewrite to {name} ({finding.code})", lsp.CodeActionKind.QuickFix
    action = lsp.CodeAction(
        title=title, kind=kind, diagnostics=diagnostics or None, is_preferred=finding is not None
    )
    if ls.resolves_edits:
        candidates = [finding] if finding else [c.finding for c in result.findings]
        if not await ls.run(ls.checker.could_fix, document.source, candidates):
            return None
        action.data = {
            "uri": document.uri,
            "version": document.version,
            "key": finding_key(finding) if finding else None,
        }
        return action
    edit = await _compute_fix(ls, document, result, finding)
    if edit is None:
        return None
    action.edit = edit
    return action


def serve() -> int:
    """Speak LSP on stdin/stdout until the client says exit."""
    logging.basicConfig(level=logging.WARNING, format="corral server: %(message)s")
    server = build_server()
    mode = os.fstat(sys.stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        server.start_io()  # a file or a device (not pollable): pygls's own reader
        return 0
    try:
        asyncio.run(_serve_stdio(server))
    except BrokenPipeError:
        logging.getLogger(__name__).error("the client closed the connection")
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


async def _serve_stdio(server: CorralServer) -> None:
    """pygls's message loop, reading stdin on the event loop itself: its own reader hands
    every header line and body to a thread and back (three hops per message, each a
    scheduling delay on a busy machine)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    server._stop_event = threading.Event()  # what pygls's shutdown() sets
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    with contextlib.suppress(asyncio.IncompleteReadError):  # the client left mid-message
        await run_async(
            stop_event=server._stop_event,
            reader=reader,
            protocol=server.protocol,
            logger=logging.getLogger(__name__),
            error_handler=server.report_server_error,
        )
