"""The hot loop of a TaskQueue worker: take an entry, run it, record the outcome.

Everything the per-task path touches is bound to a local first: this loop is where a
queue spends its time (see DESIGN.md, "Measured facts"). Calls are stepped by
:mod:`corral._stepper` (own context snapshot per task, time-sliced fairness). Counts for
the current task name are kept in locals while tasks run back to back and flushed into
the tally before the worker awaits anything: an observation in the first histogram
bucket is then just a local increment.

Each round of :func:`run_tasks` runs inside a cancel scope that lives across many
tasks; ``handle.cancel()`` on a running task cancels that scope and :func:`work` opens a
fresh one, so only cancelled tasks pay for a scope.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from typing import TYPE_CHECKING

import anyio

from . import _identity
from ._job import Job, Tally, Worker, call_chain, flush, perf_counter
from ._stepper import FINISHED, SLICE, call, checkpoint, resume
from .durable import AttemptCancelled, RetryScheduled
from .errors import TaskCancelled
from .metrics import DURATION_BUCKETS
from .observers import call_hooks
from .task_info import TaskInfo

if TYPE_CHECKING:
    from .queue import TaskQueue

__all__ = ["work"]


async def work(queue: TaskQueue, worker: Worker) -> None:
    """One worker: run tasks until the line ends or the queue stops."""
    cancelled_exc = anyio.get_cancelled_exc_class()
    queue._live_workers += 1
    identity = _identity.register(lambda: _running_info(queue, worker))
    try:
        while not queue._stopping:
            worker.interrupted = False
            try:
                with anyio.CancelScope() as scope:
                    worker.scope = scope
                    if await run_tasks(queue, worker):
                        return  # the line ended: drained
            except cancelled_exc:
                # Not absorbed by this worker's scope: either the queue or its host is
                # being cancelled (stop), or a task raised the backend's cancellation
                # exception itself (already resolved as cancelled; keep working).
                if queue._stopping or anyio.current_effective_deadline() == -math.inf:
                    raise
    finally:
        _identity.unregister(identity)
        worker.job = None
        if worker.next_job is not None:
            queue._drop_at_stop(worker.next_job)
            worker.next_job = None
        queue._live_workers -= 1
        if queue._live_workers == 0 and queue._workers_done is not None:
            queue._workers_done.set()


def _running_info(queue: TaskQueue, worker: Worker) -> TaskInfo | None:
    job = worker.job
    return None if job is None else queue._info(job)


async def run_tasks(queue: TaskQueue, worker: Worker) -> bool:
    """Run tasks back to back; True when the line has ended, False after a cancel."""
    line = queue._line
    jobs = line.jobs
    take = jobs.popleft
    keys = queue._keys
    room_waiters = queue._room_waiters
    perf = perf_counter
    bounds = DURATION_BUCKETS
    first_bound = bounds[0]
    # Durable tasks apply the middleware inside their attempt (corral.durable).
    wrap = call_chain if queue._middleware and queue._durable is None else call
    finished = FINISHED
    slice_ = SLICE
    hooks_start = queue._hooks_start
    hooks_complete = queue._hooks_complete
    cur: Tally | None = None
    succeeded = fast_waits = fast_runs = 0
    wait_sum = run_sum = 0.0
    nxt, worker.next_job = worker.next_job, None  # next task of the key this worker holds
    turn = mark = perf()  # turn: when this worker last gave the event loop back
    try:
        while True:
            if nxt is not None:
                job, nxt = nxt, None
                held = True
            elif jobs:
                job = take()
                held = False
            else:
                if line.closed:
                    return True  # the line ended: drained
                worker.job = None
                if cur is not None:
                    flush(cur, succeeded, fast_waits, wait_sum, fast_runs, run_sum)
                    succeeded = fast_waits = fast_runs = 0
                    wait_sum = run_sum = 0.0
                await line.wait()
                turn = mark = perf()
                continue
            key = job.key
            if job._state:  # cancelled while queued
                if held:
                    nxt = queue._release(key)
                continue
            if key is not None and not held:
                if key in keys:  # a task of this key is running: wait behind it
                    parked = keys[key]
                    if parked is None:
                        keys[key] = deque((job,))
                    else:
                        parked.append(job)
                    continue
                keys[key] = None
            queue._depth -= 1
            if room_waiters:
                room_waiters.popleft().set()
            worker.job = job
            tally = job.tally
            if tally is not cur:
                if cur is not None:
                    flush(cur, succeeded, fast_waits, wait_sum, fast_runs, run_sum)
                    succeeded = fast_waits = fast_runs = 0
                    wait_sum = run_sum = 0.0
                cur = tally
            elapsed = mark - job.t_submit
            if elapsed < first_bound:
                fast_waits += 1
            else:
                tally.wait.counts[bisect_left(bounds, elapsed)] += 1
            wait_sum += elapsed
            if hooks_start:
                call_hooks(hooks_start, queue._info(job))
            ctx = job.ctx  # the task's own snapshot, taken at submit
            try:
                step = wrap(job)
                yielded = ctx.run(next, step, finished)
                if yielded is not finished:  # the task awaits something
                    flush(cur, succeeded, fast_waits, wait_sum, fast_runs, run_sum)
                    succeeded = fast_waits = fast_runs = 0
                    wait_sum = run_sum = 0.0
                    await resume(ctx, step, yielded)
                    turn = perf()
            except Exception as exc:
                flush(cur, succeeded, fast_waits, wait_sum, fast_runs, run_sum)
                succeeded = fast_waits = fast_runs = 0
                wait_sum = run_sum = 0.0
                await _finish_failed(queue, worker, job, exc, perf() - mark)
                nxt, worker.next_job = worker.next_job, None
                mark = perf()
            except BaseException as exc:
                _finish_cancelled(queue, worker, job, exc, perf() - mark)
                raise
            else:
                now = perf()
                elapsed = now - mark
                if elapsed < first_bound:
                    fast_runs += 1
                else:
                    tally.duration.counts[bisect_left(bounds, elapsed)] += 1
                run_sum += elapsed
                succeeded += 1
                if key is not None:
                    nxt = queue._release(key)
                # Inlined job._set_result(): call stored the result already; nobody
                # else resolves a running task, and most handles have no callbacks.
                if job._callbacks is None:
                    job._state = 1
                else:
                    job._finish()
                if hooks_complete:
                    call_hooks(hooks_complete, queue._info(job), "success", None)
                mark = now
            if worker.interrupted:
                return False  # handle.cancel() used up this scope: open a fresh one
            if mark - turn >= slice_:  # fairness: give the loop back (see _stepper)
                worker.job = None  # idle while it waits for its turn (the busy gauge)
                flush(cur, succeeded, fast_waits, wait_sum, fast_runs, run_sum)
                succeeded = fast_waits = fast_runs = 0
                wait_sum = run_sum = 0.0
                await checkpoint()
                turn = mark = perf()
    finally:
        if nxt is not None:
            worker.next_job = nxt
        if cur is not None:
            flush(cur, succeeded, fast_waits, wait_sum, fast_runs, run_sum)


async def _finish_failed(
    queue: TaskQueue, worker: Worker, job: Job, exc: Exception, elapsed: float
) -> None:
    tally = job.tally
    tally.duration.observe(elapsed)
    if job.key is not None:
        worker.next_job = queue._release(job.key)
    if isinstance(exc, AttemptCancelled):  # a durable task cancelled by id: not an error
        tally.cancelled += 1
        job._set_exception(TaskCancelled(str(exc)))
        if queue._hooks_complete:
            call_hooks(queue._hooks_complete, queue._info(job), "cancelled", job._exception)
        return
    tally.error += 1
    job._set_exception(exc)
    if not isinstance(exc, RetryScheduled):  # a stored retry is not a final failure
        await queue._failed(job, exc, job.ctx)
    if queue._hooks_complete:
        call_hooks(queue._hooks_complete, queue._info(job), "error", exc)


def _finish_cancelled(
    queue: TaskQueue, worker: Worker, job: Job, exc: BaseException, elapsed: float
) -> None:
    tally = job.tally
    tally.duration.observe(elapsed)
    tally.cancelled += 1
    if job.key is not None:
        worker.next_job = queue._release(job.key)
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        why = "was cancelled while running"
    else:
        why = f"was interrupted by {type(exc).__name__}"
    job._set_exception(TaskCancelled(f"task {job.name!r} (id {job.id}) {why}"))
    if queue._stopping:  # the shutdown's report names what it interrupted
        queue._interrupted[job.name] = queue._interrupted.get(job.name, 0) + 1
    if queue._hooks_complete:
        call_hooks(queue._hooks_complete, queue._info(job), "cancelled", job._exception)
