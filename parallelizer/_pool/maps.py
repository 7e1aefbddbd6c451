"""Maps as tasks: a sequence cut into chunks, each chunk one task.

A blocking map puts its chunks in a job of its own; main runs the chunks no
server has taken yet itself (main works too), then waits for the rest,
moving the progress bar as they finish. A static schedule pins one block
to each process instead. ``map_async``/``imap`` only submit the chunks.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .. import semantics
from .._core import checks, mapping, progress
from .outcomes import as_remote_error
from .session import Job, Session
from .tasks import WAIT_STEP, Record, Task


class NoBlock:
    """Stands for the result of an empty vectorized block (``func`` is not called on it)."""


def apply_chunk(func: Callable[..., Any], items: Any, vectorized: bool, star: bool, first: int) -> Any:
    """A map's task: ``func`` over a chunk of items (or on the whole chunk, vectorized).

    A failing item is named in a note of its exception (its index, a short repr).
    """
    if vectorized:
        return func(items) if len(items) else NoBlock
    return mapping.apply_items(func, items, first, 0, star)


def chunk_records(
    session: Session,
    func: Callable[..., Any],
    data: Any,
    chunks: Iterable[tuple[int, int]],
    vectorized: bool,
    star: bool,
    job: Any,
) -> list[Record]:
    """One task per chunk ``[start, stop)`` of ``data``."""
    records = []
    for start, stop in chunks:
        block = semantics.take_block(data, start, stop)
        record = session.record(apply_chunk, (func, block, vectorized, star, start), {}, None, job)
        record.size = stop - start
        records.append(record)
    return records


def results(tasks: list[Task]) -> list[Any]:
    """Every task's result, in order, once all are done; the first failure raised as a RemoteError."""
    concurrent.futures.wait(tasks)
    for task in tasks:
        error = task.exception()
        if error is not None:
            raise as_remote_error(error)
    return [task.result() for task in tasks]


def join(parts: list[Any], vectorized: bool) -> Any:
    """The map's result from its chunks' results, in order."""
    return semantics.join_map_results([part for part in parts if part is not NoBlock], vectorized)


def map_blocking(
    session: Session,
    ranks: list[int],
    func: Callable[..., Any],
    data: Any,
    vectorized: bool,
    schedule: str,
    chunksize: int | None,
    show_progress: bool,
    star: bool = False,
) -> Any:
    """``map`` on the servers ``ranks`` and main, in input order."""
    bar = progress.open_bar(len(data), show_progress)
    try:
        if schedule == "static":
            bounds = semantics.block_bounds(len(data), 1 + len(ranks))
            # the servers' blocks first: each leaves while the next is sealed, and main's own last
            served = []
            for bound, rank in zip(bounds[1:], ranks, strict=True):
                (record,) = chunk_records(session, func, data, [bound], vectorized, star, None)
                record.pinned = rank
                session.submit(record)
                served.append(record)
            records = chunk_records(session, func, data, bounds[:1], vectorized, star, None) + served
            job = Job(records[:1])
        else:
            chunks = list(semantics.dynamic_chunks(len(data), 1 + len(ranks), chunksize))
            job = Job()
            records = chunk_records(session, func, data, chunks, vectorized, star, job)
            job.queue.extend(records)
            session.add_job(job)
        _work_and_wait(session, job, records, bar)
        return join(results([record.task for record in records]), vectorized)
    finally:
        if bar is not None:
            bar.close()


def _work_and_wait(session: Session, job: Job, records: list[Record], bar: progress.Bar | None) -> None:
    """Main runs the job's unassigned tasks itself, then waits for the rest (moving the bar).

    While main computes, the dispatcher thread beside it gets the GIL in short turns
    (:meth:`Session.working_beside`), so servers are not kept waiting.
    """
    waiting = list(records)

    def advance() -> None:
        nonlocal waiting
        still = []
        for record in waiting:
            if not record.task.done():
                still.append(record)
            elif bar is not None:
                bar.update(record.size)
        waiting = still

    with session.working_beside():
        while True:
            record = session.steal(job)
            if record is None:
                break
            session.run_here(record)
            advance()
    while waiting:
        tasks = [record.task for record in waiting]
        concurrent.futures.wait(tasks, timeout=WAIT_STEP, return_when=concurrent.futures.FIRST_COMPLETED)
        advance()


def as_sequence(data: Any) -> Any:
    """``data`` as something to cut into chunks (any iterable is listed)."""
    if checks.is_splittable(data):
        return data
    try:
        return list(data)
    except TypeError:
        raise TypeError(f"data must be an iterable, not {type(data).__name__}") from None


def joined(tasks: list[Task], vectorized: bool) -> Task:
    """A task whose result is the map over ``tasks``' chunks, once all are done."""
    whole = Task()
    left = [len(tasks)]
    lock = threading.Lock()

    def one_done(_: concurrent.futures.Future[Any]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        try:
            parts = results(tasks)
        except BaseException as exc:
            whole.set_exception(exc)
            return
        whole.set_result(join(parts, vectorized))

    if not tasks:
        whole.set_result([])
    for task in tasks:
        task.add_done_callback(one_done)
    return whole
