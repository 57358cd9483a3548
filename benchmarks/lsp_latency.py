"""Diagnostics latency of ``corral server`` for a 1,000-line file, with a real LSP client.

Each of 50 edits changes one line of a 1,000-line module and measures, from the moment the
edit is sent:

* pull: ``textDocument/didChange`` then ``textDocument/diagnostic`` until the report arrives
  (no debounce is involved: the client asks when it wants);
* push: until ``textDocument/publishDiagnostics`` for that version arrives, minus the
  configured debounce (the figure the issue bounds: latency after the debounce).

Edits are sent as editors send them to a server that asks for incremental sync (both
servers do): the range of the changed line and its new text (``--sync full`` sends the
whole document instead).

The peer is ``ruff server`` answering the same pulls for the same file with the same client
in the same run. Prints median and p95 of each, the ratio to ruff, and the load average.
With ``--timing`` corral's server logs each check's time per stage (``CORRAL_SERVER_TIMING``)
and the medians per stage are printed too.

    python benchmarks/lsp_latency.py [--edits 50] [--debounce 50] [--sync full] [--timing]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Union

import cattrs
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.protocol import default_converter

HEADER = "import asyncio\nimport threading\n\n\n"
TIMING_LINE = "corral timing (ms):"
BLOCK = '''async def handler_{i}(request: dict[str, int]) -> int:
    """Handle one request."""
    total = 0
    for key, value in request.items():
        if key.startswith("x"):
            total += value
    {call}
    return total


'''


def module(lines: int = 1_000) -> str:
    """About ``lines`` lines of ordinary code, with a raw task every fifth function."""
    parts = [HEADER]
    i = 0
    while sum(p.count("\n") for p in parts) < lines - 10:
        call = "asyncio.create_task(handler_0({}))" if i % 5 == 0 else "total += 1"
        parts.append(BLOCK.format(i=i, call=call))
        i += 1
    return "".join(parts)


def edit(text: str, n: int) -> str:
    """The same file with one line changed (a different constant each time)."""
    return text.replace("total = 0\n", f"total = {n}\n", 1)


def change(text: str, n: int, sync: str) -> lsp.TextDocumentContentChangeEvent:
    """Edit ``n`` as the client sends it: the changed line's range, or the whole text."""
    if sync == "full":
        return lsp.TextDocumentContentChangeWholeDocument(text=edit(text, n))
    lines = text.split("\n")
    line = next(i for i, t in enumerate(lines) if t.strip() == "total = 0")
    old = lines[line] if n == 0 else lines[line].replace("0", str(n - 1))
    where = lsp.Range(
        start=lsp.Position(line=line, character=0),
        end=lsp.Position(line=line, character=len(old)),
    )
    return lsp.TextDocumentContentChangePartial(range=where, text=lines[line].replace("0", str(n)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def converter() -> cattrs.Converter:
    """pygls's converter, ignoring notebook capabilities (lsprotocol cannot read ruff's)."""
    made = default_converter()
    notebook = Union[  # noqa: UP007 - the annotation lsprotocol uses, matched exactly
        lsp.NotebookDocumentSyncOptions, lsp.NotebookDocumentSyncRegistrationOptions, None
    ]

    def ignore(value: Any, _: type) -> None:
        return None

    made.register_structure_hook(notebook, ignore)
    return made


async def measure(
    command: list[str],
    root: Path,
    text: str,
    edits: int,
    *,
    pull: bool,
    debounce_ms: int,
    sync: str = "incremental",
    stages: dict[str, list[float]] | None = None,
) -> list[float]:
    client = LanguageClient("benchmark", "1", converter_factory=converter)
    published: dict[int, float] = {}

    @client.feature(lsp.WINDOW_LOG_MESSAGE)
    def on_log(params: lsp.LogMessageParams) -> None:
        if stages is not None and params.message.startswith(TIMING_LINE):
            words = params.message[len(TIMING_LINE) :].split()
            for stage, ms in zip(words[::2], words[1::2], strict=True):
                stages.setdefault(stage, []).append(float(ms))

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_publish(params: lsp.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            published.setdefault(params.version, time.perf_counter())

    caps = lsp.ClientCapabilities(
        text_document=lsp.TextDocumentClientCapabilities(
            diagnostic=lsp.DiagnosticClientCapabilities() if pull else None,
            publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(version_support=True),
        )
    )
    env = dict(os.environ)
    if stages is not None:
        env["CORRAL_SERVER_TIMING"] = "1"
    await client.start_io(*command, cwd=str(root), env=env)
    await client.initialize_async(
        lsp.InitializeParams(
            process_id=os.getpid(),
            root_uri=root.as_uri(),
            capabilities=caps,
            initialization_options={"corral": {"debounce": debounce_ms}},
        )
    )
    client.initialized(lsp.InitializedParams())
    uri = (root / "app.py").as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    identifier = lsp.TextDocumentIdentifier(uri=uri)
    if pull:  # warm up: imports, the project's configuration
        await client.text_document_diagnostic_async(
            lsp.DocumentDiagnosticParams(text_document=identifier)
        )
    else:
        while 1 not in published:
            await asyncio.sleep(0.001)
    times: list[float] = []
    for n in range(edits):
        version = n + 2
        start = time.perf_counter()
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change(text, n, sync)],
            )
        )
        if pull:
            report = await client.text_document_diagnostic_async(
                lsp.DocumentDiagnosticParams(text_document=identifier)
            )
            assert isinstance(report, lsp.RelatedFullDocumentDiagnosticReport)
            assert report.items, "the benchmark file has findings"
            times.append(time.perf_counter() - start)
        else:
            while version not in published:
                await asyncio.sleep(0.0005)
            times.append(published[version] - start - debounce_ms / 1000)
        await asyncio.sleep(0.02)  # an editor's edits are not back to back
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


def line(name: str, values: list[float], peer: list[float] | None = None) -> str:
    median, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
    text = f"{name:<42} median {median:7.2f} ms   p95 {p95:7.2f} ms"
    if peer:
        ratio = statistics.median(values) / statistics.median(peer)
        text += f"   {ratio:5.2f}x ruff's median"
    return text


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--debounce", type=int, default=50, help="ms (push mode)")
    parser.add_argument("--sync", choices=["incremental", "full"], default="incremental")
    parser.add_argument("--timing", action="store_true", help="corral's time per stage")
    args = parser.parse_args()
    stages: dict[str, list[float]] | None = {} if args.timing else None
    corral = [str(Path(sys.executable).parent / "corral"), "server"]
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    text = module()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text(
            "[tool.corral]\n\n[tool.ruff.lint]\nselect = ['E', 'F', 'TID251']\n\n"
            "[tool.ruff.lint.flake8-tidy-imports.banned-api]\n"
            "'asyncio.create_task'.msg = 'use corral.spawn'\n"
        )
        print(f"file: {text.count(chr(10))} lines, {args.edits} edits each, {args.sync} sync")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        ruff_pull = []
        if ruff:
            ruff_pull = await measure(
                [ruff, "server"], root, text, args.edits, pull=True, debounce_ms=0, sync=args.sync
            )
        corral_pull = await measure(
            corral, root, text, args.edits, pull=True, debounce_ms=0, sync=args.sync, stages=stages
        )
        corral_push = await measure(
            corral, root, text, args.edits, pull=False, debounce_ms=args.debounce, sync=args.sync
        )
    if ruff_pull:
        print(line("ruff server, pull", ruff_pull))
    print(line("corral server, pull", corral_pull, ruff_pull))
    print(line(f"corral server, push (after {args.debounce} ms debounce)", corral_push, ruff_pull))
    if stages:
        print("corral server, pull, median per stage (ms, server-side):")
        print("  " + "  ".join(f"{k} {statistics.median(v):.2f}" for k, v in stages.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
