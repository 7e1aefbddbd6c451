"""``map``, written once on the collectives and the transport.

*static*: root scatters its data into one block per process, every process
applies ``func`` to its block, and root joins the blocks' results in order.

*dynamic*: root cuts the data into chunks (:func:`semantics.dynamic_chunks`)
and keeps ``MAP_PREFETCH`` chunks queued at every other process; each result that
comes back earns its sender the next chunk. Root computes chunks too,
item by item, and between items hands out chunks to processes that finished.
When no chunk is left root sends every process ``None`` to end the map.

A failing item is named in a note of its exception (its index in ``data``,
a short repr): the note shows in the traceback, also in a ``RemoteError``'s.
A static map's worker knows only its place in its own block; root rewrites
that note with the index in ``data`` when the error reaches it.

With ``capture`` (the maps of a ``ClientServerRunner``), an exception in
``func`` does not escape on the process that ran it: the block's result is a
:class:`TaskFailure`, every process finishes the map as usual (a dynamic map
hands out no more chunks), and root raises it as a ``RemoteError`` naming the
rank that ran the failing block.
"""

from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import semantics
from ..errors import RemoteError
from . import checks
from . import progress as _progress
from . import remote as _remote
from .limits import MAP_POLL_INTERVAL, MAP_PREFETCH
from .tags import CollTag, Space
from .transport import Transport


class _NoBlock:
    """Stands for the result of an empty block (``func`` skips empty blocks)."""


class TaskFailure:
    """A block whose ``func`` raised, as its result travels back to root."""

    __slots__ = ("rank", "report")

    def __init__(self, rank: int, report: dict[str, Any]) -> None:
        self.rank = rank
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskFailure, (self.rank, self.report))

    def error(self) -> Exception:
        """The ``RemoteError`` root raises for it."""
        return _remote.rebuild(self.rank, self.report)


def run_map(
    par: Transport,
    func: Callable[[Any], Any],
    data: Any,
    root: int,
    vectorized: bool,
    schedule: str,
    chunksize: int | None,
    progress: bool,
    *,
    capture: bool = False,
) -> Any:
    """The body of :meth:`Parallelizer.map` once its arguments are checked.

    With ``capture``, exceptions in ``func`` come back to root as
    ``RemoteError`` (see the module docstring).
    """
    on_root = par.id == root
    bar = None
    if on_root:
        data, refusal = checks.check_root_data(data, "data")
        if refusal is None:
            try:
                bar = _progress.open_bar(len(data), progress)
            except ImportError as exc:
                refusal = checks.Refusal(exc)
        if refusal is not None:
            _refuse(par, refusal, root, schedule)
    try:
        if par.nprocs == 1 and not vectorized and bar is None and not capture:
            return _apply_block(func, data, False, None, 0, par.id)  # one process: nothing to split or join
        compute = _computer(par.id, func, vectorized, capture)
        if par.nprocs == 1:
            result = compute(semantics.root_block(data, 0, len(data)), bar, 0)
            _raise_failures([result])
            return semantics.join_map_results([] if result is _NoBlock else [result], vectorized)
        if schedule == "dynamic":
            if on_root:
                return _dynamic_root(par, compute, data, root, vectorized, chunksize, bar)
            return _dynamic_worker(par, compute, root)
        return _static(par, compute, data, root, vectorized, progress, bar)
    finally:
        if bar is not None:
            bar.close()


def _refuse(par: Transport, refusal: checks.Refusal, root: int, schedule: str) -> None:
    """Root found its arguments wrong: every process raises the error, the group stays in step."""
    if par.nprocs > 1 and par._connected():
        if schedule == "dynamic":
            for rank in range(par.nprocs):
                if rank != root:
                    par._send(refusal, rank, CollTag.MAP_TASK, Space.COLL)
            par._complete_sends()
        else:
            par._scatter(refusal, None, root)
    refusal.raise_it()


# compute(block, bar, first): ``first`` is where the block starts in the data (None: not known here)
Compute = Callable[[Sequence[Any], "_progress.Bar | None", "int | None"], Any]


def _computer(rank: int, func: Callable[[Any], Any], vectorized: bool, capture: bool) -> Compute:
    """Applies ``func`` to a block; with ``capture``, a raise becomes a :class:`TaskFailure`."""

    def compute(block: Sequence[Any], bar: _progress.Bar | None, first: int | None) -> Any:
        if not capture:
            return _apply_block(func, block, vectorized, bar, first, rank)
        try:
            return _apply_block(func, block, vectorized, bar, first, rank)
        except Exception as exc:
            return TaskFailure(rank, _remote.report(exc))

    return compute


def _raise_failures(results: Sequence[Any]) -> None:
    for result in results:
        if isinstance(result, TaskFailure):
            raise result.error()


def _apply_block(
    func: Callable[[Any], Any],
    block: Sequence[Any],
    vectorized: bool,
    bar: _progress.Bar | None,
    first: int | None,
    rank: int,
) -> Any:
    """``func`` over ``block`` (or on it, vectorized); a failing item is named in a note of its exception."""
    if vectorized:
        if len(block) == 0:
            return _NoBlock
        result = func(block)
        if bar is not None:
            bar.update(len(block))
        return result
    if bar is None:
        return apply_items(func, block, first, rank)
    items = iter(block)
    try:
        results = []
        for item in items:
            results.append(func(item))
            bar.update(1)
        return results
    except Exception as exc:
        _name_failing_item(exc, block, items, first, rank)
        raise


def apply_items(
    func: Callable[..., Any], block: Sequence[Any], first: int | None, rank: int, star: bool = False
) -> list[Any]:
    """``[func(item) for item in block]`` (``func(*item)`` with ``star``), at the builtin ``map``'s speed.

    A failing item is named in a note of its exception (:func:`remote.note_map_item`).

    Example:
        >>> apply_items(abs, [-1, 2], 0, 0)
        [1, 2]
        >>> try:
        ...     apply_items(divmod, [(7, 2), (1, 0)], 10, 0, star=True)
        ... except ZeroDivisionError as exc:
        ...     print(exc.__notes__)
        ['(in map item 11: (1, 0))']
    """
    items = iter(block)
    try:
        return list(itertools.starmap(func, items) if star else map(func, items))
    except Exception as exc:
        _name_failing_item(exc, block, items, first, rank)
        raise


def _name_failing_item(exc: Exception, block: Sequence[Any], items: Any, first: int | None, rank: int) -> None:
    """Names the item of ``block`` that ``exc`` came from: the last one taken from its iterator ``items``.

    Blocks are lists, tuples, ranges or arrays, whose iterators know what is left.
    """
    index = len(block) - operator.length_hint(items, len(block)) - 1
    if 0 <= index < len(block):
        _remote.note_map_item(exc, block[index], index, first, rank)


def _static(
    par: Transport,
    compute: Compute,
    data: Any,
    root: int,
    vectorized: bool,
    progress: bool,
    bar: _progress.Bar | None,
) -> Any:
    bounds = semantics.block_bounds(len(data), par.nprocs) if par.id == root else None
    block = par._scatter(data, bounds, root)
    checks.refused(block)
    local = compute(block, bar, None if bounds is None else bounds[root][0])
    try:
        parts = _static_results(par, local, root, progress, bar, bounds)
        if parts is None:
            return None
        _raise_failures(parts)
    except RemoteError as error:  # a worker's item failed: name it by its index in data
        if bounds is not None:
            _remote.locate_map_item(error, [start for start, _ in bounds])
        raise
    return semantics.join_map_results([part for part in parts if part is not _NoBlock], vectorized)


def _static_results(
    par: Transport,
    local: Any,
    root: int,
    progress: bool,
    bar: _progress.Bar | None,
    bounds: list[tuple[int, int]] | None,
) -> list[Any] | None:
    """Every block's result on root (``None`` elsewhere), moving the bar as they arrive."""
    if not progress:
        parts = par._gather_list(local, root)
    elif par.id != root:
        par._send(local, root, CollTag.MAP_RESULT, Space.COLL)
        par._complete_sends()
        parts = None
    else:
        # Results are collected as they arrive, so the bar moves with them.
        assert bounds is not None
        parts = [None] * par.nprocs
        parts[root] = local
        for _ in range(par.nprocs - 1):
            got = par._recv_any(CollTag.MAP_RESULT, Space.COLL)
            assert got is not None
            source, result = got
            parts[source] = result
            assert bar is not None
            start, stop = bounds[source]
            bar.update(stop - start)
    return parts


def _dynamic_root(
    par: Transport,
    compute: Compute,
    data: Any,
    root: int,
    vectorized: bool,
    chunksize: int | None,
    bar: _progress.Bar | None,
) -> Any:
    chunks = list(semantics.dynamic_chunks(len(data), par.nprocs, chunksize))
    results: list[Any] = [None] * len(chunks)
    next_chunk = 0
    in_flight = 0
    failed = False

    def hand_out(rank: int) -> None:
        nonlocal next_chunk, in_flight
        if next_chunk < len(chunks) and not failed:
            start, stop = chunks[next_chunk]
            task = (next_chunk, start, semantics.take_block(data, start, stop))
            par._send(task, rank, CollTag.MAP_TASK, Space.COLL)
            next_chunk += 1
            in_flight += 1

    def collect(block: bool) -> bool:
        nonlocal in_flight, failed
        got = par._recv_any(CollTag.MAP_RESULT, Space.COLL, block)
        if got is None:
            return False
        source, (index, result) = got
        results[index] = result
        failed = failed or isinstance(result, TaskFailure)
        in_flight -= 1
        if bar is not None:
            start, stop = chunks[index]
            bar.update(stop - start)
        hand_out(source)
        return True

    others = [rank for rank in range(par.nprocs) if rank != root]
    for _ in range(MAP_PREFETCH):
        for rank in others:
            hand_out(rank)
    while next_chunk < len(chunks) and not failed:
        while collect(block=False):
            pass
        if next_chunk >= len(chunks) or failed:
            break
        index = next_chunk
        next_chunk += 1
        start, stop = chunks[index]
        results[index] = _root_chunk(compute, semantics.root_block(data, start, stop), start, vectorized, bar, collect)
        failed = failed or isinstance(results[index], TaskFailure)
    while in_flight:
        collect(block=True)
    for rank in others:
        par._send(None, rank, CollTag.MAP_TASK, Space.COLL)
    par._complete_sends()
    _raise_failures(results)
    return semantics.join_map_results(results, vectorized)


def _root_chunk(
    compute: Compute,
    items: Sequence[Any],
    first: int,
    vectorized: bool,
    bar: _progress.Bar | None,
    collect: Callable[[bool], bool],
) -> Any:
    """Computes one chunk on root, in slices of items.

    Between slices (about every ``MAP_POLL_INTERVAL`` seconds) root collects the
    chunks other processes finished and hands them new ones.
    """
    if vectorized:
        return compute(items, bar, first)
    results: list[Any] = []
    step = 1
    start = 0
    while start < len(items):
        began = time.perf_counter()
        part = compute(items[start : start + step], bar, first + start)
        if isinstance(part, TaskFailure):
            return part
        results.extend(part)
        start += step
        elapsed = time.perf_counter() - began
        if elapsed >= MAP_POLL_INTERVAL:
            while collect(False):
                pass
        # aim each slice at MAP_POLL_INTERVAL: few clock reads for tiny items
        step = max(1, min(2 * step, int(step * MAP_POLL_INTERVAL / elapsed) if elapsed else 2 * step))
    return results


def _dynamic_worker(par: Transport, compute: Compute, root: int) -> None:
    while True:
        task = par._recv(root, CollTag.MAP_TASK, Space.COLL)
        checks.refused(task)
        if task is None:
            par._complete_sends()
            return None
        index, first, items = task
        par._send((index, compute(items, None, first)), root, CollTag.MAP_RESULT, Space.COLL)
