"""``corral tasks``: inspect and repair a durable task database from the shell.

    corral tasks list --db tasks.db [--queue Q] [--state pending|running|done|cancelled]
    corral tasks show --db tasks.db ID
    corral tasks cancel --db tasks.db ID [ID ...]
    corral tasks dlq --db tasks.db [--queue Q]
    corral tasks retry --db tasks.db ID [ID ...]      | retry --all-dlq [--queue Q]
    corral tasks purge --db tasks.db --dlq [--queue Q]
    corral tasks stats --db tasks.db
    corral tasks stats --redis redis://host:6379/0 --stream corral:emails   (any command)

Every command takes ``--json``. Exit codes follow ``corral check``: 0 ok, 1 a problem was
found (a non-empty dead-letter table, an unknown id, a task that had already finished when
asked to cancel it), 2 usage or configuration error (bad arguments, missing or foreign
database, an ambiguous id prefix). User errors print one line, never a traceback. The
database is never created by this command.

Task ids may be shortened to any unique prefix, as in git: ``corral tasks show 3fa9c1``.
A prefix that names several tasks exits 2 and lists them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio

from .store.base import QueueStats, Store, StoreError, TaskRecord, TaskState
from .store.redis import RedisStore, _import_redis
from .store.sqlite import SQLiteStore

__all__ = ["main"]

T = TypeVar("T")

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
_EXIT_SIGPIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE
_AMBIGUOUS_SHOWN = 10  # matches listed for an ambiguous prefix


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns 2 with one message."""

    def error(self, message: str) -> Any:
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="corral tasks",
        description=(
            "Inspect and repair a durable task store: a SQLite database (--db PATH, "
            "corral.SQLiteStore) or a Redis stream (--redis URL [--stream NAME], "
            "corral.RedisStore, needs corral[redis])."
        ),
    )
    parser.add_argument("--db", metavar="PATH", help="the task database file (or --redis URL)")
    parser.add_argument(
        "--redis", metavar="URL", help="a Redis holding a task stream (instead of --db)"
    )
    parser.add_argument("--stream", default="corral:tasks", help="with --redis: the stream")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        # Also accepted after the command: `corral tasks list --db tasks.db --json`.
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        sub.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS)
        sub.add_argument("--redis", metavar="URL", default=argparse.SUPPRESS)
        sub.add_argument("--stream", default=argparse.SUPPRESS)
        return sub

    listing = command("list", "tasks waiting or running (or recently done)")
    listing.add_argument("--queue")
    listing.add_argument("--state", choices=("pending", "running", "done", "cancelled"))
    listing.add_argument("--limit", type=int, default=100)
    show = command("show", "one task with its arguments, error and traceback")
    show.add_argument("id")
    cancel = command(
        "cancel",
        "cancel tasks: pending ones at once, running ones at their next checkpoint "
        "(exit 1 if one had already finished or does not exist)",
    )
    cancel.add_argument("ids", nargs="+", metavar="ID")
    dlq = command("dlq", "the dead-letter table (exit 1 when it is not empty)")
    dlq.add_argument("--queue")
    dlq.add_argument("--limit", type=int, default=100)
    retry = command("retry", "move dead tasks back to pending with a fresh attempt budget")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all-dlq", action="store_true", help="every dead task")
    retry.add_argument("--queue", help="with --all-dlq: only this queue")
    purge = command("purge", "delete dead tasks for good")
    purge.add_argument("--dlq", action="store_true", help="required: purge the dead-letter table")
    purge.add_argument("--queue")
    command("stats", "counts per queue")
    schedule = command("schedule", "periodic tasks with their next fire times (needs no --db)")
    schedule.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module that declares @corral.periodic tasks (repeatable)",
    )
    schedule.add_argument("--queue")
    return parser


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str | None, width: int = 60) -> str:
    if not text:
        return "-"
    line = text.strip().splitlines()[-1] if text.strip() else "-"
    return line if len(line) <= width else line[: width - 1] + "…"


def _table(records: Sequence[TaskRecord], out: TextIO) -> None:
    header = ("ID", "QUEUE", "NAME", "STATE", "ATTEMPTS", "NOT_BEFORE", "LAST_ERROR")
    rows = [
        (
            r.id,
            r.queue,
            r.name,
            r.state,
            f"{r.attempts}/{r.max_attempts}",
            _when(r.not_before),
            _one_line(r.last_error),
        )
        for r in records
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _show(record: TaskRecord, out: TextIO) -> None:
    data = record.to_json()
    for field in ("id", "queue", "name", "state", "idempotency_key"):
        out.write(f"{field}: {data[field] if data[field] is not None else '-'}\n")
    out.write(f"attempts: {record.attempts}/{record.max_attempts}\n")
    if "payload" in data:  # damaged: show what is stored, never guess
        out.write(f"args: - (unreadable)\nkwargs: - (unreadable)\npayload: {data['payload']!r}\n")
    else:
        out.write(f"args: {json.dumps(data['args'])}\n")
        out.write(f"kwargs: {json.dumps(data['kwargs'])}\n")
    out.write(f"created: {_when(record.created_at)}\n")
    out.write(f"updated: {_when(record.updated_at)}\n")
    out.write(f"not_before: {_when(record.not_before)}\n")
    if record.result is not None:
        out.write(
            f"result: {record.result!r}\n"
            if "result_text" in data
            else f"result: {record.result}\n"
        )
    for name, value in data.get("headers", {}).items():  # e.g. the submit's traceparent
        out.write(f"{name}: {value}\n")
    out.write(f"last_error: {record.last_error or '-'}\n")
    if record.last_traceback:
        out.write("traceback:\n")
        for line in record.last_traceback.rstrip().splitlines():
            out.write(f"  {line}\n")


async def _resolve(store: Store, given: str) -> str | None:
    """The full id that ``given`` names (itself, or its one unique prefix match); None if
    no task has it; a usage error listing the matches when the prefix is ambiguous."""
    if not given:
        raise _UsageError("corral tasks: a task id must not be empty")
    if await store.get(given) is not None:
        return given
    matches = await store.match_ids(given, limit=_AMBIGUOUS_SHOWN + 1)
    if len(matches) > 1:
        shown = ", ".join(matches[:_AMBIGUOUS_SHOWN])
        more = " ..." if len(matches) > _AMBIGUOUS_SHOWN else ""
        raise _UsageError(
            f"corral tasks: id prefix {given!r} is ambiguous: it matches {shown}{more}; "
            "give more characters"
        )
    return matches[0] if matches else None


async def _resolve_all(store: Store, given: Sequence[str]) -> tuple[list[str], list[str]]:
    """(full ids, the given ids that name no task), in the order given."""
    found: list[str] = []
    missing: list[str] = []
    for text in given:
        task_id = await _resolve(store, text)
        if task_id is None:
            missing.append(text)
        elif task_id not in found:
            found.append(task_id)
    return found, missing


async def _cancel(store: Store, given: Sequence[str]) -> tuple[dict[str, TaskState], list[str]]:
    ids, missing = await _resolve_all(store, given)
    outcome: dict[str, TaskState] = {}
    for task_id in ids:
        state = await store.cancel(task_id, now=time.time())
        if state is None:  # finished and forgotten between the lookup and the cancel
            missing.append(task_id)
        else:
            outcome[task_id] = state
    return outcome, missing


def _damage(records: Sequence[TaskRecord], err: TextIO) -> bool:
    """Say on stderr which records hold a payload or result that cannot be read."""
    found = False
    for record in records:
        for problem in record.to_json().get("damaged", ()):
            err.write(f"corral tasks: {problem}\n")
            found = True
    return found


# A store keeps a finished task only while its idempotency key must be remembered; every other
# task is deleted when it completes. Said under the table so a small count is not read as
# "nothing has completed" (corral_tasks_completed_total counts completions).
_KEPT_DONE_NOTE = (
    "KEPT_DONE: finished tasks kept for their idempotency key; other tasks are deleted when "
    "they finish (count completions with corral_tasks_completed_total)\n"
)


_CANCELLABLE = ("pending", "running")


def _stats_json(stats: Sequence[QueueStats]) -> list[dict[str, Any]]:
    return [
        {
            "queue": s.queue,
            "pending": s.pending,
            "running": s.running,
            "dead": s.dead,
            "done": s.done,
            "cancelled": s.cancelled,
            "oldest_pending_at": s.oldest_pending_at,
        }
        for s in stats
    ]


async def _with_store(args: argparse.Namespace, action: Callable[[Store], Awaitable[T]]) -> T:
    store: Store
    if args.redis is not None:
        store = RedisStore(args.redis, stream=args.stream, create=False)
    else:
        # Inspecting a file we may not write (read-only directory or file system) opens
        # it read-only instead of failing; repairs still need write access.
        inspect = args.command in ("list", "show", "dlq", "stats")
        store = SQLiteStore(args.db, read_only=inspect and not _writable(Path(args.db)))
    async with store:
        return await action(store)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "schedule":
        from ._schedule_cli import show_schedule

        return show_schedule(args.modules, args.queue, args.json, out, err)
    path = args.db
    if path is None and args.redis is None:
        raise _UsageError("corral tasks: --db PATH is required (or --redis URL)")
    if path is not None and args.redis is not None:
        raise _UsageError("corral tasks: give --db PATH or --redis URL, not both")
    if args.redis is not None:
        try:
            _import_redis()  # without the redis extra: one line, not a traceback at connect
            probe = RedisStore(args.redis, stream=args.stream, create=False)
        except (ValueError, ImportError) as exc:
            raise _UsageError(f"corral tasks: {exc}") from None
        path = f"{probe.where} (stream {args.stream})"
    elif not Path(path).is_file():
        raise _UsageError(f"corral tasks: no task database at {path}")
    as_json: bool = args.json
    command: str = args.command

    def emit(value: Any) -> None:
        out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")

    if command == "list":
        records = anyio.run(
            _with_store,
            args,
            lambda s: s.list_tasks(queue=args.queue, state=args.state, limit=args.limit),
        )
        if as_json:
            emit([r.to_json() for r in records])
        elif records:
            _table(records, out)
        else:
            out.write("no tasks\n")
        return EXIT_FOUND if _damage(records, err) else EXIT_OK
    if command == "show":

        async def show(store: Store) -> TaskRecord | None:
            task_id = await _resolve(store, args.id)
            return None if task_id is None else await store.get(task_id)

        record = anyio.run(_with_store, args, show)
        if record is None:
            err.write(f"corral tasks: no task with id {args.id} in {path}\n")
            return EXIT_FOUND
        if as_json:
            emit(record.to_json())
        else:
            _show(record, out)
        return EXIT_FOUND if _damage([record], err) else EXIT_OK
    if command == "dlq":
        dead = anyio.run(
            _with_store, args, lambda s: s.list_dead(queue=args.queue, limit=args.limit)
        )
        if as_json:
            emit([r.to_json() for r in dead])
        elif dead:
            _table(dead, out)
        else:
            out.write("the dead-letter table is empty\n")
        _damage(dead, err)
        return EXIT_FOUND if dead else EXIT_OK
    if command == "retry":
        if bool(args.ids) == bool(args.all_dlq):
            raise _UsageError("corral tasks retry: give task ids or --all-dlq (not both)")
        if args.queue is not None and not args.all_dlq:
            raise _UsageError("corral tasks retry: --queue goes with --all-dlq")
        given: list[str] | None = None if args.all_dlq else list(args.ids)

        async def requeue(store: Store) -> tuple[list[str], list[str]]:
            if given is None:
                return await store.requeue_dead(None, now=time.time(), queue=args.queue), []
            ids, unknown = await _resolve_all(store, given)
            moved = await store.requeue_dead(ids, now=time.time(), queue=args.queue)
            return moved, unknown + [i for i in ids if i not in set(moved)]

        moved, missing = anyio.run(_with_store, args, requeue)
        if as_json:
            emit({"requeued": moved, "not_found": missing})
        else:
            out.write(f"requeued {len(moved)} task(s)\n")
        for task_id in missing:
            err.write(f"corral tasks: {task_id} is not in the dead-letter table\n")
        return EXIT_FOUND if missing else EXIT_OK
    if command == "cancel":
        outcome, missing = anyio.run(_with_store, args, lambda s: _cancel(s, args.ids))
        finished = {i: state for i, state in outcome.items() if state not in _CANCELLABLE}
        if as_json:
            emit(
                {
                    "cancelled": [i for i, state in outcome.items() if state == "pending"],
                    "cancelling": [i for i, state in outcome.items() if state == "running"],
                    "finished": finished,
                    "not_found": missing,
                }
            )
        for task_id, state in outcome.items():
            if as_json or state not in _CANCELLABLE:
                continue
            if state == "pending":
                out.write(f"cancelled {task_id} (it had not started)\n")
            else:
                out.write(
                    f"cancelling {task_id}: it is running; the process running it cancels it "
                    "at its next checkpoint\n"
                )
        for task_id, state in finished.items():
            err.write(f"corral tasks: {task_id} has already finished ({state}): not cancelled\n")
        for task_id in missing:
            err.write(f"corral tasks: no task with id {task_id} in {path}\n")
        return EXIT_FOUND if finished or missing else EXIT_OK
    if command == "purge":
        if not args.dlq:
            raise _UsageError("corral tasks purge: say what to purge: --dlq")
        count = anyio.run(_with_store, args, lambda s: s.purge_dead(queue=args.queue))
        if as_json:
            emit({"purged": count})
        else:
            out.write(f"purged {count} dead task(s)\n")
        return EXIT_OK
    stats = anyio.run(_with_store, args, lambda s: s.stats())
    if as_json:
        emit(_stats_json(stats))
    elif not stats:
        out.write("no tasks\n")
    else:
        out.write(
            f"{'QUEUE':<20} {'PENDING':>8} {'RUNNING':>8} {'DEAD':>8} {'KEPT_DONE':>9} "
            f"{'CANCELLED':>9}  OLDEST\n"
        )
        for s in stats:
            out.write(
                f"{s.queue:<20} {s.pending:>8} {s.running:>8} {s.dead:>8} {s.done:>9} "
                f"{s.cancelled:>9}  {_when(s.oldest_pending_at)}\n"
            )
        out.write(_KEPT_DONE_NOTE)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``corral tasks``; returns the exit code."""
    out, err = sys.stdout, sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        code = _run(args, out, err)
        out.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `corral tasks list | head -1`: the reader is gone, like a CLI killed by SIGPIPE.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
        return _EXIT_SIGPIPE
    except _UsageError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except StoreError as exc:  # foreign or damaged file, unreadable directory, disk full
        err.write(f"corral tasks: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
