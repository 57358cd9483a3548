"""A real LSP client (pygls's) driving ``corral server`` as a subprocess over stdio."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import cattrs
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.protocol import default_converter

TIMEOUT = 60.0  # generous: the machine is shared and may be busy


def corral_command() -> list[str]:
    """The ``corral`` script of the interpreter running the tests (editable or wheel)."""
    return [str(Path(sys.executable).parent / "corral"), "server"]


def capabilities(
    *,
    pull: bool = False,
    snippets: bool = False,
    resolve: bool = False,
    watch: bool = True,
    configuration: bool = True,
    show_document: bool = True,
    refresh: bool = True,
) -> lsp.ClientCapabilities:
    """Client capabilities shaped like a real editor's, with the switches the tests need."""
    return lsp.ClientCapabilities(
        workspace=lsp.WorkspaceClientCapabilities(
            apply_edit=True,
            configuration=configuration,
            workspace_edit=lsp.WorkspaceEditClientCapabilities(
                document_changes=True, snippet_edit_support=snippets
            ),
            did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(
                dynamic_registration=watch
            ),
            diagnostics=lsp.DiagnosticWorkspaceClientCapabilities(refresh_support=refresh)
            if pull
            else None,
        ),
        text_document=lsp.TextDocumentClientCapabilities(
            synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=True),
            publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(
                version_support=True, code_description_support=True, data_support=True
            ),
            diagnostic=lsp.DiagnosticClientCapabilities() if pull else None,
            code_action=lsp.CodeActionClientCapabilities(
                code_action_literal_support=lsp.ClientCodeActionLiteralOptions(
                    code_action_kind=lsp.ClientCodeActionKindOptions(
                        value_set=[lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.SourceFixAll]
                    )
                ),
                data_support=True,
                resolve_support=lsp.ClientCodeActionResolveOptions(properties=["edit"])
                if resolve
                else None,
            ),
            hover=lsp.HoverClientCapabilities(content_format=[lsp.MarkupKind.Markdown]),
        ),
        window=lsp.WindowClientCapabilities(
            show_document=lsp.ShowDocumentClientCapabilities(support=show_document)
        ),
    )


@dataclass
class Session:
    """What the server sent us, recorded as it arrives."""

    client: LanguageClient
    root: Path
    published: dict[str, list[lsp.PublishDiagnosticsParams]] = field(default_factory=dict)
    logs: list[lsp.LogMessageParams] = field(default_factory=list)
    shown: list[lsp.ShowMessageParams] = field(default_factory=list)
    documents_shown: list[lsp.ShowDocumentParams] = field(default_factory=list)
    registrations: list[lsp.Registration] = field(default_factory=list)
    refreshes: int = 0
    configuration: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def exit_code(self) -> int | None:
        process = self.client._server
        return process.returncode if process is not None else None

    # -- waiting --------------------------------------------------------------------------
    async def wait_for(self, what: str, predicate: Callable[[], object]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; logs: {self.logs}")
            await asyncio.sleep(0.01)

    async def next_diagnostics(self, uri: str, count: int) -> list[lsp.Diagnostic]:
        """Wait for the ``count``-th publication for ``uri`` (1-based) and return it."""
        await self.wait_for(
            f"publication {count} for {uri}", lambda: len(self.published.get(uri, [])) >= count
        )
        return list(self.published[uri][count - 1].diagnostics)

    def publications(self, uri: str) -> int:
        return len(self.published.get(uri, []))

    # -- documents ------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str | None = None) -> str:
        uri = self.uri(name)
        if text is None:
            text = (self.root / name).read_text()
        self.versions[uri] = 1
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        return uri

    def change(self, uri: str, text: str) -> int:
        self.versions[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        return self.versions[uri]

    def save(self, uri: str) -> None:
        self.client.text_document_did_save(
            lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )

    async def pull(self, uri: str, previous: str | None = None) -> Any:
        return await self.client.text_document_diagnostic_async(
            lsp.DocumentDiagnosticParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri), previous_result_id=previous
            )
        )

    async def code_actions(
        self,
        uri: str,
        diagnostics: list[lsp.Diagnostic],
        only: list[str] | None = None,
    ) -> list[lsp.CodeAction]:
        where = (
            diagnostics[0].range
            if diagnostics
            else lsp.Range(
                start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=0)
            )
        )
        result = await self.client.text_document_code_action_async(
            lsp.CodeActionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                range=where,
                context=lsp.CodeActionContext(diagnostics=diagnostics, only=only),
            )
        )
        return [a for a in result or [] if isinstance(a, lsp.CodeAction)]


_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def apply_text_edits(text: str, edits: list[Any]) -> str:
    """Apply LSP text edits (UTF-16 positions) to ``text`` as an editor does."""
    lines = _LINES.findall(text)

    def offset(position: lsp.Position) -> int:
        if position.line >= len(lines):
            return len(text)
        start = sum(len(line) for line in lines[: position.line])
        units = 0
        for i, char in enumerate(lines[position.line]):
            if units >= position.character or char in "\r\n":
                return start + i
            units += 2 if ord(char) > 0xFFFF else 1
        return start + len(lines[position.line])

    spans = sorted(
        ((offset(e.range.start), offset(e.range.end), e.new_text) for e in edits),
        key=lambda s: (s[0], s[1]),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def edits_for(edit: lsp.WorkspaceEdit, uri: str) -> list[Any]:
    """The text edits a workspace edit makes to one document (documentChanges or changes)."""
    found: list[Any] = []
    for change in edit.document_changes or []:
        if isinstance(change, lsp.TextDocumentEdit) and change.text_document.uri == uri:
            found.extend(change.edits)
    found.extend((edit.changes or {}).get(uri, []))
    return found


def converter() -> cattrs.Converter:
    """pygls's converter, telling a CodeAction that carries a command from a bare Command by
    the type of ``command`` (a string only in a Command), as VS Code's client does."""
    made = default_converter()

    def action_or_command(value: Any, _: type) -> lsp.Command | lsp.CodeAction:
        if isinstance(value.get("command"), str):
            return made.structure(value, lsp.Command)
        return made.structure(value, lsp.CodeAction)

    made.register_structure_hook(Union[lsp.Command, lsp.CodeAction], action_or_command)  # noqa: UP007
    return made


@asynccontextmanager
async def lsp_session(
    root: Path,
    *,
    command: list[str] | None = None,
    caps: lsp.ClientCapabilities | None = None,
    options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Session]:
    """Start ``corral server`` in ``root``, initialize, yield, then shutdown and exit."""
    client = LanguageClient("corral-tests", "1", converter_factory=converter)
    session = Session(client, root)

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_publish(params: lsp.PublishDiagnosticsParams) -> None:
        session.published.setdefault(params.uri, []).append(params)

    @client.feature(lsp.WINDOW_LOG_MESSAGE)
    def on_log(params: lsp.LogMessageParams) -> None:
        session.logs.append(params)

    @client.feature(lsp.WINDOW_SHOW_MESSAGE)
    def on_show(params: lsp.ShowMessageParams) -> None:
        session.shown.append(params)

    @client.feature(lsp.WINDOW_SHOW_DOCUMENT)
    def on_show_document(params: lsp.ShowDocumentParams) -> lsp.ShowDocumentResult:
        session.documents_shown.append(params)
        return lsp.ShowDocumentResult(success=True)

    @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
    def on_register(params: lsp.RegistrationParams) -> None:
        session.registrations.extend(params.registrations)

    @client.feature(lsp.WORKSPACE_DIAGNOSTIC_REFRESH)
    def on_refresh(params: None) -> None:
        session.refreshes += 1

    @client.feature(lsp.WORKSPACE_CONFIGURATION)
    def on_configuration(params: lsp.ConfigurationParams) -> list[Any]:
        return [session.configuration for _ in params.items]

    environment = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
    environment.update(env or {})
    cmd = command or corral_command()
    await client.start_io(*cmd, cwd=str(root), env=environment)
    try:
        await asyncio.wait_for(
            client.initialize_async(
                lsp.InitializeParams(
                    process_id=os.getpid(),
                    root_uri=root.as_uri(),
                    capabilities=caps or capabilities(),
                    initialization_options=options,
                    workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                )
            ),
            TIMEOUT,
        )
        client.initialized(lsp.InitializedParams())
        yield session
        await asyncio.wait_for(client.shutdown_async(None), TIMEOUT)
        client.exit(None)
        await asyncio.wait_for(client.stop(), TIMEOUT)
        assert session.exit_code() == 0
    finally:
        process = client._server  # the server process pygls started for us
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        if not client.stopped:
            await asyncio.wait_for(client.stop(), TIMEOUT)
