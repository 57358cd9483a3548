"""Check many files: cache lookups and the prefilter in this process, parsing in a pool.

Only files that pass the text prefilter are parsed. Once there is enough work to pay for
them, candidates stream to worker processes while this process keeps reading and hashing.

A second pass serves the project-wide subclass index: every file records (with its cached
result) the module-level classes it derives from banned classes and the modules it imports.
A file importing a module that defines such a class is checked again with those classes
known, so ``from .workers import Poller; Poller()`` is an instantiation wherever it is. The
result of that pass is cached under the file's content hash plus a hash of the index slice
it saw, so a warm run reads it back and an edit to the defining module is noticed. When every
file hits the cache, the pass's outcome is read back whole, under a key naming each file's
path, content hash and package (all the pass depends on), instead of being redone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from .cache import ResultCache, content_hash
from .digest import hexdigest
from .findings import Finding
from .imports_scan import imported_modules
from .packages import absolute_module, module_name
from .records import Record, field
from .ruleset import RuleSet
from .safeio import MAX_SOURCE_BYTES, read_regular
from .source import Unreadable, decode
from .suppressions import may_suppress

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported where used: workers when they start, the engine for a parse
    from concurrent.futures import Future, ProcessPoolExecutor

    from .resolver import Exports, SubclassIndex
    from .workers import ForkPool

__all__ = ["CheckResult", "check_files", "reachable"]

PARALLEL_MIN_BYTES = 256 * 1024

_worker_rules: RuleSet | None = None
_worker_strict = False


class CheckResult(Record):
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    parsed: int = 0
    cached: int = 0
    index: SubclassIndex = field(default_factory=dict)  # the project's subclasses, by module
    paths: dict[str, str] = field(default_factory=dict)  # shown -> real path, files with findings


def _init_worker(rules: RuleSet, strict: bool) -> None:
    global _worker_rules, _worker_strict
    _worker_rules, _worker_strict = rules, strict


def _check_in_worker(job: tuple[str, bytes, bool | None]) -> tuple[list[Finding], Exports]:
    from .engine import check_module

    assert _worker_rules is not None
    shown, data, matched = job
    return check_module(data, shown, _worker_rules, strict=_worker_strict, matched=matched)


INDEX_ROUNDS = 3  # re-exports of re-exports: how far a subclass travels between modules


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _absolute(imported: str, package: str | None) -> str | None:
    """``.workers`` (as ``imported_modules`` gives it) seen from ``package``."""
    rest = imported.lstrip(".")
    return absolute_module(len(imported) - len(rest), rest or None, package)


def reachable(
    index: SubclassIndex, imports: Iterable[str], package: Callable[[], str | None]
) -> SubclassIndex:
    """The part of ``index`` a file importing ``imports`` (as ``imported_modules`` gives
    them) can reach; ``package`` gives the file's package, asked only for a relative import."""
    return _slice(index, _absolute_imports(imports, package))


def _absolute_imports(imports: Iterable[str], package: Callable[[], str | None]) -> set[str]:
    modules: set[str] = set()
    known: list[str | None] = []  # the package, asked once
    for m in imports:
        absolute: str | None = m
        if m.startswith("."):
            if not known:
                known.append(package())
            absolute = _absolute(m, known[0])
        if absolute is not None:
            modules.add(absolute)
    return modules


def _slice(index: SubclassIndex, modules: set[str]) -> SubclassIndex:
    return {m: index[m] for m in sorted(modules) if m in index}


def _hash_of(module: str, exports: Exports, hashes: dict[str, str]) -> str:
    if module not in hashes:
        import json  # the index pass only, for modules that define subclasses

        text = json.dumps(exports, sort_keys=True, separators=(",", ":"))
        hashes[module] = content_hash(text.encode())
    return hashes[module]


class _File:
    """What the index pass needs of a file (under ``--no-cache`` only files that import
    something, define subclasses or are still being checked are kept). Slotted and written
    out: one is built per file, and a dataclass would bring ``dataclasses`` (and inspect)
    to every start-up for this class alone."""

    __slots__ = ("dated", "digest", "exports", "findings", "imports", "path", "shown")

    def __init__(
        self,
        shown: str,
        path: str,
        digest: str,
        findings: list[Finding],
        exports: Exports | None,  # None (both): in the cache, not read yet
        imports: list[str] | None,
        dated: bool = False,  # its findings may change with the date (``_dated``)
    ) -> None:
        self.shown, self.path, self.digest = shown, path, digest
        self.findings, self.exports, self.imports = findings, exports, imports
        self.dated = dated


def _dated(text: str | Unreadable) -> bool:
    """Whether the file's findings may change with the date: only a suppression's ``until=``
    makes them (the word appears in the decoded text wherever such a suppression does)."""
    return not isinstance(text, Unreadable) and "until" in text


def check_files(
    files: Iterable[tuple[str, Path | str]],
    rules: RuleSet,
    cache: ResultCache,
    *,
    strict: bool = False,
    jobs: int | None = None,
    reference: bool = False,
) -> CheckResult:
    """``files`` are (display path, filesystem path) pairs, consumed as they come.
    ``reference`` parses and resolves every file in this process with no shortcut (see
    ``engine.check_module``)."""
    result = CheckResult()
    seen_hashes: set[str] = set()
    checked: list[_File] = []
    workers = 1 if reference else jobs if jobs is not None else default_jobs()
    persistent = cache.persistent
    with _Dispatcher(rules, strict, workers, reference) as dispatcher:
        shared: dict[tuple[str, ...], list[str]] = {}
        texts: dict[str, str] = {}

        def receive(done: list[tuple[_File, tuple[list[Finding], Exports]]]) -> None:
            for file, (findings, exports) in done:
                file.findings, file.exports = _compact(findings, file.shown, texts), exports
                if persistent:
                    cache.put(file.digest, findings, dated=file.dated)
                    cache.put_facts(file.digest, exports, file.imports or [])
            done.clear()  # what workers sent is dropped as it is taken in

        for shown, path in files:
            key = os.fspath(path)
            _check_one(shown, key, rules, cache, result, seen_hashes, dispatcher, checked, shared)
            if dispatcher.forks is not None and dispatcher.forks.done:
                receive(dispatcher.finished())
        receive(dispatcher.results())
    packages = _Packages()
    run_key = None
    if cache.persistent and not reference:
        run_key = _run_key(checked, packages, strict)
    index = _index_reused(run_key, checked, cache, seen_hashes) if run_key else None
    if index is None:
        outcome = _Outcome(complete=_fill_facts(checked, cache, rules, strict))
        index = _index_pass(
            checked, rules, cache, strict, seen_hashes, reference, package=packages, outcome=outcome
        )
        if run_key is not None and outcome.complete:
            cache.put_run(run_key, outcome.finals, index)
    result.index = index
    for file in checked:
        if file.findings:
            result.findings.extend(file.findings)
            result.paths[file.shown] = file.path
    cache.save(seen_hashes)
    result.findings.sort()
    return result


_PENDING: list[Finding] = []  # identity marks a file whose result comes from the dispatcher


class _Packages:
    """``packages.package_of`` per directory, each directory's ``__init__.py`` looked at once
    (a directory's package is its parent's plus its name, while ``__init__.py`` files go on)."""

    def __init__(self) -> None:
        self.known: dict[str, str | None] = {}

    def of_directory(self, directory: str) -> str | None:
        known = self.known
        if directory in known:
            return known[directory]
        package: str | None = None
        if os.path.isfile(os.path.join(directory, "__init__.py")):
            parent = os.path.dirname(directory)
            above = self.of_directory(parent) if parent != directory else None
            name = os.path.basename(directory)
            package = f"{above}.{name}" if above is not None else name
        known[directory] = package
        return package

    def __call__(self, path: Path | str) -> str | None:
        """The package of the file at ``path``, as ``package_of`` gives it."""
        name = os.fspath(path)
        directory = name.rpartition(os.sep)[0]  # os.path.dirname, for a normal path
        if not directory and name.startswith(os.sep):
            directory = os.sep
        return self.of_directory(directory)


class _Outcome(Record):
    """What the index pass did, for the next run to read back: (position, findings key) of
    each file whose findings it replaced; not ``complete`` if a file could not be re-read."""

    finals: list[tuple[int, str]] = field(default_factory=list)
    complete: bool = True


def _run_key(checked: list[_File], packages: _Packages, strict: bool) -> str:
    """Names everything the index pass reads that the cache file's own key does not: each
    file's path, content and package, in order (a later module of the same name wins)."""
    parts = [f"strict={strict}:{INDEX_ROUNDS}\n"]
    for file in checked:
        package = packages(file.path)
        parts.append(f"{file.path}\0{file.digest}\0{'' if package is None else package}\1\n")
    return hexdigest("".join(parts).encode(), 16)


def _index_reused(
    key: str, checked: list[_File], cache: ResultCache, keep: set[str]
) -> SubclassIndex | None:
    """The index pass's outcome recorded under ``key``: every file whose findings it replaced
    gets them back; None (redo the pass) if anything it names is missing or malformed."""
    recorded = cache.get_run(key)
    if recorded is None:
        return None
    finals, index = recorded
    if not all(_valid_exports(exports) for exports in index.values()):
        return None
    replaced: list[tuple[_File, list[Finding]]] = []
    for position, found in finals:
        if not 0 <= position < len(checked):
            return None
        file = checked[position]
        findings = cache.get(found, file.shown)
        if findings is None:
            return None
        replaced.append((file, findings))
        keep.add(found)
    for file, findings in replaced:
        file.findings = findings
    return index


def _fill_facts(checked: list[_File], cache: ResultCache, rules: RuleSet, strict: bool) -> bool:
    """The import facts of the files served by their stat record, for the index pass; a file
    whose facts are missing from the cache is checked again here (a damaged cache only).
    False if such a file no longer has the content its stat record named."""
    from .engine import check_module  # only files to parse need the parser and the resolver

    consistent = True
    for file in checked:
        if file.exports is not None and file.imports is not None:
            continue
        facts = cache.get_facts(file.digest)
        if facts is not None:
            file.exports, file.imports = facts
            continue
        try:
            data = read_regular(file.path, MAX_SOURCE_BYTES)
        except OSError as exc:
            reason = f"cannot read: {exc.strerror or exc}"
            file.findings = [Finding(file.shown, 1, 1, "CRL901", reason)]
            file.exports, file.imports = {}, []
            continue
        file.findings, file.exports = check_module(data, file.shown, rules, strict=strict)
        text = decode(data)
        file.imports = imported_modules(text)
        if content_hash(data) != file.digest:
            consistent = False  # changed since its stat: this run's outcome is not recorded
            continue
        cache.put(file.digest, file.findings, dated=_dated(text))
        cache.put_facts(file.digest, file.exports, file.imports)
    return consistent


def _valid_exports(exports: object) -> bool:
    return isinstance(exports, dict) and all(
        isinstance(bases, list) and all(isinstance(b, str) for b in bases)
        for bases in exports.values()
    )


def _index_pass(
    checked: list[_File],
    rules: RuleSet,
    cache: ResultCache,
    strict: bool,
    keep: set[str],
    reference: bool = False,
    package: _Packages | None = None,
    outcome: _Outcome | None = None,
) -> SubclassIndex:
    """Check again, with the project's subclasses known, the files importing their modules;
    returns the index as it stands after (re-exports and subclass chains included)."""
    if not any(file.exports for file in checked) or not rules.subclass_codes:
        return {}
    from .engine import check_module

    package = package if package is not None else _Packages()

    def module_of(path: str) -> str:
        return module_name(path, package(path))

    hashes: dict[str, str] = {}  # module -> hash of its exports, once per run
    index: SubclassIndex = {}
    for file in checked:
        if file.exports:
            index[module_of(file.path)] = file.exports
    # what each file imports, made absolute once for every round
    imported = [_absolute_imports(f.imports or (), partial(package, f.path)) for f in checked]
    final: dict[int, str] = {}
    for _ in range(INDEX_ROUNDS):
        changed = False
        for position, (file, modules) in enumerate(zip(checked, imported, strict=True)):
            wanted = _slice(index, modules)
            if not wanted:
                continue
            view = "".join(f"{m}:{_hash_of(m, wanted[m], hashes)}," for m in wanted)
            key = f"{file.digest}+{content_hash(view.encode())}"
            keep.add(key)
            findings = cache.get(key, file.shown)
            facts = cache.get_facts(key)
            if findings is None or facts is None:
                try:
                    data = read_regular(file.path, MAX_SOURCE_BYTES)
                except OSError:
                    if outcome is not None:
                        outcome.complete = False
                    continue
                if cache.persistent and content_hash(data) != file.digest:
                    if outcome is not None:
                        outcome.complete = False
                    continue  # changed while we ran: the first pass's result stands
                names = {name.encode() for exports in wanted.values() for name in exports}
                if reference or any(name in data for name in names):
                    findings, exports = check_module(
                        data, file.shown, rules, strict=strict, index=wanted, reference=reference
                    )
                else:  # imports the module but names none of its subclasses
                    findings, exports = file.findings, file.exports or {}
                cache.put(key, findings, dated=_dated(decode(data)))
                cache.put_facts(key, exports, file.imports or [])
            else:
                exports = facts[0]
            file.findings = findings
            final[position] = key
            if exports != file.exports:
                file.exports = exports
                index[module_of(file.path)] = exports
                hashes.pop(module_of(file.path), None)
                changed = True
        if not changed:
            break
    if outcome is not None:
        outcome.finals.extend(sorted(final.items()))
    return {module: exports for module, exports in index.items() if exports}


def _compact(findings: list[Finding], shown: str, texts: dict[str, str]) -> list[Finding]:
    """Findings as a worker sends them, each with texts of its own: the file's name and the
    texts many findings repeat (code, message, qualified name, kind) shared instead."""
    if not findings:
        return findings

    def one(text: str) -> str:
        return texts.setdefault(text, text)

    return [
        Finding(
            shown if f.path == shown else f.path,
            f.line,
            f.col,
            one(f.code),
            one(f.message),
            f.end_line,
            f.end_col,
            f.source,
            one(f.qualname),
            one(f.kind),
            one(f.evades),
        )
        for f in findings
    ]


def _died(shown: str) -> tuple[list[Finding], Exports]:
    reason = "the checker process died while checking this file"
    return [Finding(shown, 1, 1, "CRL901", f"cannot check: {reason}")], {}


class _Dispatcher:
    """Parses candidates inline until there is enough work to pay for worker processes, then
    streams them to forked children (``workers.ForkPool``; a ``spawn`` process pool where
    fork is not safe) while this process goes on reading, hashing and prefiltering."""

    def __init__(self, rules: RuleSet, strict: bool, workers: int, reference: bool = False) -> None:
        self.rules, self.strict, self.workers = rules, strict, workers
        self.reference = reference
        self.buffered: list[tuple[str, _File, bytes, bool | None]] = []
        self.buffered_bytes = 0
        self.forks: ForkPool | None = None
        self.pool: ProcessPoolExecutor | None = None
        self.futures: list[
            tuple[str, _File, bytes, bool | None, Future[tuple[list[Finding], Exports]]]
        ] = []
        self.done: list[tuple[_File, tuple[list[Finding], Exports]]] = []

    def __enter__(self) -> _Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.forks is not None:
            self.forks.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _check(
        self, shown: str, data: bytes, matched: bool | None
    ) -> tuple[list[Finding], Exports]:
        from .engine import check_module

        return check_module(data, shown, self.rules, strict=self.strict, matched=matched)

    def submit(self, shown: str, file: _File, data: bytes, matched: bool | None = None) -> None:
        """``matched``: the prefilter's verdict, so the worker does not prefilter again;
        ``results`` pairs ``file`` with the outcome."""
        if self.forks is not None:
            self.forks.submit(file, (shown, data, matched), len(data))
            return
        if self.pool is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                future = self.pool.submit(_check_in_worker, (shown, data, matched))
            except BrokenProcessPool:  # a worker died: its files are retried in results()
                self.pool.shutdown(wait=False)
                self.pool = self._new_pool(self.workers)
                future = self.pool.submit(_check_in_worker, (shown, data, matched))
            self.futures.append((shown, file, data, matched, future))
            return
        self.buffered.append((shown, file, data, matched))
        self.buffered_bytes += len(data)
        if self.workers > 1 and self.buffered_bytes >= PARALLEL_MIN_BYTES:
            from .workers import ForkPool, fork_safe

            if fork_safe():
                from . import engine  # noqa: F401 (imported once here, not in every child)

                self.forks = ForkPool(self.workers, self._check, _died)
            else:
                self.pool = self._new_pool(self.workers)
            buffered, self.buffered = self.buffered, []
            for item in sorted(buffered, key=lambda b: len(b[2]), reverse=True):
                self.submit(*item)

    def finished(self) -> list[tuple[_File, tuple[list[Finding], Exports]]]:
        """What the forked children have finished so far (taken: not returned again)."""
        assert self.forks is not None
        done, self.forks.done = self.forks.done, []
        return done  # type: ignore[return-value]

    def results(self) -> list[tuple[_File, tuple[list[Finding], Exports]]]:
        """Everything not yet taken with ``finished``, once all is checked."""
        if self.buffered:  # a run that parses nothing never imports the engine
            from .engine import check_module
        for shown, file, data, matched in self.buffered:
            found = check_module(
                data,
                shown,
                self.rules,
                strict=self.strict,
                reference=self.reference,
                matched=matched,
            )
            self.done.append((file, found))
        self.buffered = []
        if self.forks is not None:
            self.done.extend(self.forks.drain())  # type: ignore[arg-type]
        if self.futures:
            from concurrent.futures.process import BrokenProcessPool
        for shown, file, data, matched, future in self.futures:
            try:
                self.done.append((file, future.result()))
            except BrokenProcessPool:
                self.done.append((file, self._alone(shown, data, matched)))
        return self.done

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        # the submodule itself, so the pool and the call items it pickles are one module's
        from concurrent.futures.process import ProcessPoolExecutor
        from multiprocessing import get_context

        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.rules, self.strict),
        )

    def _alone(
        self, shown: str, data: bytes, matched: bool | None
    ) -> tuple[list[Finding], Exports]:
        """A worker died: every file it had not finished is checked again in a process of
        its own, so a file that kills its checker costs only itself (CRL901), never the run."""
        from concurrent.futures.process import BrokenProcessPool

        with self._new_pool(1) as pool:
            try:
                return pool.submit(_check_in_worker, (shown, data, matched)).result()
            except BrokenProcessPool:
                return _died(shown)


def _check_one(
    shown: str,
    key: str,
    rules: RuleSet,
    cache: ResultCache,
    result: CheckResult,
    seen_hashes: set[str],
    dispatcher: _Dispatcher,
    checked: list[_File],
    shared: dict[tuple[str, ...], list[str]],
) -> None:
    """``shared``: one list per distinct import list (most files import the same few)."""
    result.files += 1
    try:
        st = os.stat(key)
        known = cache.digest_for_stat(key, st)
        if known is not None:
            seen_hashes.add(known)
            cache.keep_stat(key)
            result.cached += 1
            found = cache.get(known, shown) or []
            # its import facts are read only if the index pass has to run (_fill_facts)
            checked.append(_File(shown, key, known, found, None, None))
            return
        data = read_regular(key, MAX_SOURCE_BYTES)
    except OSError as exc:
        result.findings.append(
            Finding(shown, 1, 1, "CRL901", f"cannot read: {exc.strerror or exc}")
        )
        result.paths[shown] = key
        return
    # without a cache that outlives the run, the path names the content well enough, and
    # nothing is recorded for a file that needs no parse (memory stays per candidate)
    persistent = cache.persistent
    digest = content_hash(data) if persistent else key
    if persistent:
        seen_hashes.add(digest)
        cache.record_stat(key, st, digest)
    cached = cache.get(digest, shown)
    facts = cache.get_facts(digest)
    if cached is not None and facts is not None:
        result.cached += 1
        checked.append(_File(shown, key, digest, cached, facts[0], facts[1]))
        return
    text = decode(data)  # once, for the import scan, the prefilter and the date check
    found_imports = imported_modules(text)
    imports = shared.setdefault(tuple(found_imports), found_imports)
    verdict = None if dispatcher.reference else _prefilter(text, rules, key)
    if verdict is not False:
        result.parsed += 1
        if persistent:
            cache.put_facts(digest, {}, imports)
        file = _File(shown, key, digest, _PENDING, {}, imports, persistent and _dated(text))
        dispatcher.submit(shown, file, data, None if verdict is None else verdict == "match")
        checked.append(file)
    elif persistent:
        cache.put(digest, [], dated=_dated(text))
        cache.put_facts(digest, {}, imports)
        checked.append(_File(shown, key, digest, [], {}, imports))
    elif imports:  # else nothing can reach it, and it defines nothing: nothing to keep
        checked.append(_File(shown, key, digest, [], {}, imports))


def _prefilter(text: str | Unreadable, rules: RuleSet, path: str) -> str | bool | None:
    """Prefilter the decoded text (any declared encoding, utf-7 included): a file that cannot
    be decoded goes on to be reported as CRL901 whatever it contains (None: the engine
    decides). "match": resolve it; "suppressions": only its suppression comments can give
    findings; False: nothing can."""
    if isinstance(text, Unreadable):
        return None
    if rules.may_match(text, path):
        return "match"
    return "suppressions" if may_suppress(text, rules.prefixes) else False
