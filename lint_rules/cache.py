"""Results cache: findings per file content hash, one file per (catalogue, configuration).

Results are keyed by content, never by mtime, so a cached entry is valid wherever the content
appears; path-dependent filters (per-rule allow, baseline) are applied after the cache. Like
git's index, a stat record per path saves re-reading a file whose stat is unchanged: size,
mtime, ctime and inode, so an edit that keeps the size and restores the mtime (``touch -r``,
``os.utime``) still changes the ctime, and a file replaced by another (a checkout's rename)
changes the inode. Files modified within the last seconds before the cache was written are
read again (the "racy" window, where a timestamp cannot prove the content is unchanged).

Results do not depend on the date, with one exception: a suppression's ``until=`` stops
suppressing the day after. So the key holds no date; each cache file records the day it was
written, and entries of files whose text says ``until`` are marked as dated: read on another
day, those alone are dropped and checked again, and every other entry stays warm.

A warm run whose files all hit records the outcome of the project-wide subclass index pass
(runner.py) under a key naming every file's path, content and package: the next run with the
same key reads the outcome back instead of redoing the pass.

Nothing from the repository is trusted as a result: every cache file is signed (HMAC-SHA256)
with a key kept in the user's cache directory, outside every project, so a cache file that
was committed, copied or edited is ignored, and a fresh CI machine starts uncached.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import digest
from .findings import Finding
from .patterns import LazyPattern
from .safeio import (
    MAX_DATA_BYTES,
    UnsafePath,
    create_new,
    inside,
    read_regular,
    replace_atomically,
)
from .suppressions import today as local_today

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ResultCache", "content_hash", "parsed_through_cache", "signed_read", "signed_write"]

CACHE_FORMAT = 10  # 10: no date in the key, dated entries; 9: signed with keyed BLAKE2b
RUNS_KEPT = 8  # run keys remembered: `check .`, pre-commit's subsets, the editor's index
FILES_KEPT = 8  # cache files kept per directory: one per configuration (and version) in use
_CACHE_FILE = LazyPattern(r"v[0-9]+-[0-9a-f]+\.json")  # how ResultCache names its files
RACY_SECONDS = 2.0


def content_hash(data: bytes) -> str:
    return digest.hexdigest(data, 16)


def _facts(f: Finding) -> tuple[str, str, str]:
    return f.qualname, f.kind, f.evades


class ResultCache:
    def __init__(
        self,
        directory: Path | None,
        key: str,
        secret: bytes | None = None,
        root: Path | None = None,
        today: str = "",
    ) -> None:
        """``today`` (YYYY-MM-DD, default the local date): the day the findings are made for,
        as the engine judges ``until=`` (``RuleSet.today``)."""
        if directory is not None and secret is None:
            secret = user_secret()
        if secret is None:
            directory = None  # no key to authenticate entries with: run uncached
        self.directory = directory
        self.root = root if root is not None else directory.parent if directory else None
        self.secret = secret or b""
        self.path = directory / f"v{CACHE_FORMAT}-{key}.json" if directory else None
        self.entries: dict[str, list[list[object]]] = {}
        # per content hash: [exports, imports] for the project-wide subclass index; kept as
        # JSON text (the cache file's second line) until asked for: a warm run that reuses
        # the index pass never decodes it
        self._facts: dict[str, list[Any]] | None = {}
        self._facts_text = b""
        self.stats: dict[str, list[object]] = {}
        self.written_at = 0.0
        self.new_stats: dict[str, list[object]] = {}
        # per run key: [[position, findings key]...] and the index, as the index pass left them
        self.runs: dict[str, list[Any]] = {}
        self.today = today or local_today()
        self.dated: set[str] = set()  # entries that hold only on ``today`` (an ``until=``)
        self.dirty = False
        if self.path is not None:
            self._load(self.path)

    @property
    def persistent(self) -> bool:
        """Whether results outlive this run (else nothing needs a content hash)."""
        return self.path is not None

    def _load(self, path: Path) -> None:
        """Entries signed with this user's key only; anything else is only a slower run."""
        try:
            raw = read_regular(path, MAX_DATA_BYTES)
        except OSError:
            return
        header, _, body = raw.partition(b"\n")
        if not digest.same(header, self._mac(body)):
            return  # written by someone else (committed to the repository?) or damaged
        tables, _, facts_text = body.partition(b"\n")  # compact JSON holds no newline
        import json  # not on a --no-cache run's path

        try:
            data = json.loads(tables)
            entries, stats = data["results"], data["stats"]
            facts, runs = data.get("facts", {}), data.get("runs", {})
            written_at = float(data["written_at"])
            day, dated = data["day"], data["dated"]
        except (ValueError, KeyError, TypeError, RecursionError, AttributeError):
            return
        shaped = (entries, stats, runs, facts)
        if all(isinstance(table, dict) for table in shaped) and isinstance(dated, list):
            marked = {d for d in dated if isinstance(d, str)} & entries.keys()
            dropped = set() if day == self.today else marked  # another day's: check again
            self.entries = {k: v for k, v in entries.items() if k not in dropped and _valid_rows(v)}
            self.dated = marked & self.entries.keys()
            self.dirty = bool(dropped)
            self.stats, self.runs = stats, runs
            if facts_text:
                self._facts, self._facts_text = None, facts_text
            else:
                self._facts = facts
            self.written_at = written_at

    @property
    def facts(self) -> dict[str, list[Any]]:
        """The import facts table, decoded on first use (anything malformed: empty)."""
        if self._facts is None:
            import json

            try:
                decoded = json.loads(self._facts_text)
            except (ValueError, RecursionError):
                decoded = {}
            self._facts = decoded if isinstance(decoded, dict) else {}
            self._facts_text = b""
        return self._facts

    def _mac(self, body: bytes) -> bytes:
        return f"corral-cache-v{CACHE_FORMAT} {digest.mac(self.secret, body)}".encode()

    def digest_for_stat(self, path: str, st: os.stat_result) -> str | None:
        """The content hash recorded for an unchanged stat outside the racy window."""
        record = self.stats.get(path)
        if not isinstance(record, list) or len(record) != 5:
            return None
        size, mtime_ns, ctime_ns, inode, digest = record
        if size != st.st_size or mtime_ns != st.st_mtime_ns:
            return None
        if ctime_ns != st.st_ctime_ns or inode != st.st_ino:
            return None
        if max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 >= self.written_at - RACY_SECONDS:
            return None
        return digest if isinstance(digest, str) and digest in self.entries else None

    def keep_stat(self, path: str) -> None:
        """Carry the record ``digest_for_stat`` just matched over to the next cache file."""
        self.new_stats[path] = self.stats[path]

    def record_stat(self, path: str, st: os.stat_result, digest: str) -> None:
        record: list[object] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest]
        self.new_stats[path] = record
        if self.stats.get(path) != record:
            self.dirty = True

    def get(self, digest: str, path: str) -> list[Finding] | None:
        rows = self.entries.get(digest)
        if rows is None:
            return None
        return [Finding(path, *row) for row in rows]  # type: ignore[arg-type]

    def put(self, digest: str, findings: list[Finding], *, dated: bool = False) -> None:
        """``dated``: the findings may change with the date (the file has an ``until=``),
        so they are kept for ``today`` only."""
        self.entries[digest] = [
            [f.line, f.col, f.code, f.message, f.end_line, f.end_col, f.source, *_facts(f)]
            for f in findings
        ]
        if dated:
            self.dated.add(digest)
        else:
            self.dated.discard(digest)
        self.dirty = True

    def get_facts(self, digest: str) -> tuple[dict[str, list[str]], list[str]] | None:
        """(exports, imports) recorded for this content, if well formed."""
        entry = self.facts.get(digest)
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        exports, imports = entry
        if not (isinstance(exports, dict) and isinstance(imports, list)):
            return None
        return exports, imports

    def put_facts(self, digest: str, exports: dict[str, list[str]], imports: list[str]) -> None:
        if self.facts.get(digest) != [exports, imports]:
            self.facts[digest] = [exports, imports]
            self.dirty = True

    def get_run(self, key: str) -> tuple[list[tuple[int, str]], dict[str, Any]] | None:
        """What the index pass left for this run key: (position, findings key) for each file
        whose findings it replaced, and the index; None if unknown or not well formed."""
        entry = self.runs.get(key)
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        finals, index = entry
        if not (isinstance(finals, list) and isinstance(index, dict)):
            return None
        pairs: list[tuple[int, str]] = []
        for pair in finals:
            if not (isinstance(pair, list) and len(pair) == 2):
                return None
            position, found = pair
            if type(position) is not int or not isinstance(found, str):
                return None
            pairs.append((position, found))
        return pairs, index

    def put_run(self, key: str, finals: list[tuple[int, str]], index: dict[str, Any]) -> None:
        entry = [[list(pair) for pair in finals], index]
        if self.runs.get(key) != entry:
            self.runs.pop(key, None)
            self.runs[key] = entry  # the newest last: the oldest go first past RUNS_KEPT
            self.dirty = True

    def save(self, keep: set[str]) -> None:
        """Write atomically, keeping only entries for content seen in this run. The cache
        directory must really lie inside the project; nothing is written through a symlink."""
        if self.path is None or self.directory is None or not self.dirty:
            return
        entries = {k: v for k, v in self.entries.items() if k in keep}
        facts = {k: v for k, v in self.facts.items() if k in keep}
        runs = dict(list(self.runs.items())[-RUNS_KEPT:])
        payload = {
            "results": entries,
            "stats": self.new_stats,
            "runs": runs,
            "written_at": time.time(),
            "day": self.today,
            "dated": sorted(d for d in self.dated if d in entries),
        }
        import json

        tables = json.dumps(payload, separators=(",", ":")).encode()
        body = tables + b"\n" + json.dumps(facts, separators=(",", ":")).encode()
        root = self.root or self.directory.parent
        try:
            if not inside(self.directory, root):
                raise UnsafePath(self.directory, "outside the project")
            self.directory.mkdir(parents=True, exist_ok=True)
            create_new(self.directory / ".gitignore", b"# created by corral\n*\n", root)
            replace_atomically(self.path, self._mac(body) + b"\n" + body, root, 0o600)
            _prune_cache_files(self.directory, self.path.name)
        except OSError:
            pass  # a cache that cannot be written is only a slower next run


def _keep_newest(directory: Path, ours: Callable[[str], bool], kept: int) -> None:
    """Remove all but the ``kept`` newest regular files of ``directory`` whose names are
    ``ours``; a symlink is neither followed nor removed, and failing is only a bigger
    directory."""
    try:
        with os.scandir(directory) as scan:
            found = [
                (entry.stat(follow_symlinks=False).st_mtime_ns, entry.name)
                for entry in scan
                if ours(entry.name) and entry.is_file(follow_symlinks=False)
            ]
        found.sort(reverse=True)
        for _, name in found[kept:]:
            os.unlink(directory / name)
    except OSError:
        pass


def _prune_cache_files(directory: Path, current: str) -> None:
    """Keep the ``FILES_KEPT`` newest cache files (``current`` among them): each
    configuration (strict or not, a rule selection, a catalogue or corral version) writes its
    own, and one left behind is never read again. Only files named as ours go."""
    _keep_newest(
        directory,
        lambda name: name != current and _CACHE_FILE.fullmatch(name) is not None,
        FILES_KEPT - 1,
    )


def _valid_rows(rows: object) -> bool:
    """Cached findings as ``put`` writes them: [line, col, code, message, end_line, end_col,
    source, qualname, kind, evades] with ints and strings in their places."""
    if not isinstance(rows, list):
        return False
    for row in rows:
        if not isinstance(row, list) or len(row) != 10:
            return False
        line, col, code, message, end_line, end_col, source, qualname, kind, evades = row
        if not (type(line) is int and type(col) is int):
            return False
        if not (type(end_line) is int and type(end_col) is int):
            return False
        texts = (code, message, source, qualname, kind, evades)
        if not all(isinstance(t, str) for t in texts):
            return False
    return True


def _user_directory() -> Path:
    """platformdirs' user cache directory; on Linux (not Android) its XDG rule directly,
    as importing platformdirs costs a warm run more than reading its cache."""
    if sys.platform == "linux" and "ANDROID_DATA" not in os.environ:
        base = os.environ.get("XDG_CACHE_HOME", "")
        if not base.strip():
            base = os.path.expanduser("~/.cache")
        if os.path.isabs(base):  # a relative one platformdirs replaces: ask it
            return Path(base) / "corral"
    import platformdirs

    return Path(platformdirs.user_cache_dir("corral"))


def _signature(secret: bytes, name: str, body: bytes) -> bytes:
    mac = digest.mac(secret, name.encode() + b"\0" + body)
    return f"corral-signed-b2 {mac}".encode()


def signed_read(name: str) -> bytes | None:
    """A file of this user's cache directory that ``signed_write`` wrote under this name with
    this user's key; None for anything else (missing, foreign, damaged, renamed)."""
    secret = user_secret()
    if secret is None:
        return None
    try:
        raw = read_regular(_user_directory() / name, MAX_DATA_BYTES)
    except OSError:
        return None
    header, _, body = raw.partition(b"\n")
    return body if digest.same(header, _signature(secret, name, body)) else None


def signed_write(name: str, body: bytes) -> None:
    """Write ``body`` to this user's cache directory, signed, atomically (a new private file
    renamed into place, never through a symlink); failing to is only a slower next run."""
    secret = user_secret()
    if secret is None:
        return
    directory = _user_directory()
    temporary = directory / f".{name}.{os.urandom(8).hex()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_signature(secret, name, body) + b"\n" + body)
        os.replace(temporary, directory / name)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


PARSED_KEPT = 32  # entries of one kind kept (one per catalogue or config text seen lately)


def parsed_through_cache(kind: str, text: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, through this user's signed cache of the result (``marshal``, named by
    the interpreter and the text's BLAKE2b): importing and running a YAML or TOML parser, or
    even ``json``, costs a one-file check more than reading the result back. Only data
    marshal keeps exactly is cached (no dates, no NaN); a missing, foreign or damaged entry
    is parsed again, and ``parse``'s errors propagate with nothing written. The caller
    validates cached data as it does fresh data. The entry is read only once its signature,
    made with this user's key, checks out: marshal is never given bytes it did not write.
    """
    tag = sys.implementation.cache_tag or "python"
    name = f"{kind}-{tag}-{digest.hexdigest(text.encode('utf-8', 'surrogatepass'))}.marshal"
    cached = signed_read(name)
    if cached is not None:
        try:
            return marshal.loads(cached)
        except (EOFError, ValueError, TypeError):
            pass
    data = parse(text)
    try:
        body = marshal.dumps(data)
        if marshal.loads(body) == data:
            signed_write(name, body)
            _prune(kind)
    except (ValueError, TypeError, EOFError, RecursionError):
        pass
    return data


def _prune(kind: str) -> None:
    """Keep the newest ``PARSED_KEPT`` entries of ``kind``: every edit of a config makes one."""
    _keep_newest(_user_directory(), lambda name: name.startswith(f"{kind}-"), PARSED_KEPT)


def user_secret() -> bytes | None:
    """This user's key for cache entries, kept outside every project (the user cache
    directory, mode 0600). None if there is no such place: then nothing is cached."""
    directory = _user_directory()
    key = directory / "cache-key"
    try:
        return _read_key(key)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    except FileExistsError:
        pass  # another process made it first
    except OSError:
        return None
    try:
        return _read_key(key)
    except OSError:
        return None


def _read_key(key: Path) -> bytes:
    fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise UnsafePath(key, "not a private regular file of this user")
        data = os.read(fd, 64)
    finally:
        os.close(fd)
    if len(data) < 32:
        raise UnsafePath(key, "too short")
    return data
