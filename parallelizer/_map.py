"""``map``, written once on the collectives and the transport.

*static*: root scatters its data into one block per process, every process
applies ``func`` to its block, and root joins the blocks' results in order.

*dynamic*: root cuts the data into chunks (:func:`semantics.dynamic_chunks`)
and keeps ``PREFETCH`` chunks queued at every other process; each result that
comes back earns its sender the next chunk. Root computes chunks too,
item by item, and between items hands out chunks to processes that finished.
When no chunk is left root sends every process ``None`` to end the map.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _progress, semantics
from ._tags import CollTag, Space

if TYPE_CHECKING:
    from .base import Parallelizer

PREFETCH = 2
"""Chunks queued at each process, so it never waits for the next one."""

POLL_INTERVAL = 0.0005
"""Seconds root computes between looks for finished chunks."""


class _NoBlock:
    """Stands for the result of an empty block (``func`` skips empty blocks)."""


def run_map(
    par: Parallelizer,
    func: Callable[[Any], Any],
    data: Any,
    root: int,
    vectorized: bool,
    schedule: str,
    chunksize: int | None,
    progress: bool,
) -> Any:
    """The body of :meth:`Parallelizer.map` once its arguments are checked."""
    on_root = par.id == root
    bar = None
    if on_root:
        semantics.check_sequence(data, "data")
        bar = _progress.open_bar(len(data), progress)
    try:
        if par.nprocs == 1:
            return _apply_local(func, semantics.root_block(data, 0, len(data)), vectorized, bar)
        if schedule == "dynamic":
            if on_root:
                return _dynamic_root(par, func, data, root, vectorized, chunksize, bar)
            return _dynamic_worker(par, func, root, vectorized)
        return _static(par, func, data, root, vectorized, progress, bar)
    finally:
        if bar is not None:
            bar.close()


def _apply_local(func: Callable[[Any], Any], block: Any, vectorized: bool, bar: _progress.Bar | None) -> Any:
    """Applies ``func`` to one process's whole block and joins the result."""
    result = _apply_block(func, block, vectorized, bar)
    parts = [] if result is _NoBlock else [result]
    return semantics.join_map_results(parts, vectorized)


def _apply_block(func: Callable[[Any], Any], block: Sequence[Any], vectorized: bool, bar: _progress.Bar | None) -> Any:
    if vectorized:
        if len(block) == 0:
            return _NoBlock
        result = func(block)
        if bar is not None:
            bar.update(len(block))
        return result
    if bar is None:
        return list(map(func, block))
    results = []
    for item in block:
        results.append(func(item))
        bar.update(1)
    return results


def _static(
    par: Parallelizer,
    func: Callable[[Any], Any],
    data: Any,
    root: int,
    vectorized: bool,
    progress: bool,
    bar: _progress.Bar | None,
) -> Any:
    block = par.scatter(data, root)
    local = _apply_block(func, block, vectorized, bar)
    if not progress:
        parts = par._gather_list(local, root)
    elif par.id != root:
        par._send(local, root, CollTag.MAP_RESULT, Space.COLL)
        parts = None
    else:
        # Results are collected as they arrive, so the bar moves with them.
        bounds = semantics.block_bounds(len(data), par.nprocs)
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
    if parts is None:
        return None
    return semantics.join_map_results([part for part in parts if part is not _NoBlock], vectorized)


def _dynamic_root(
    par: Parallelizer,
    func: Callable[[Any], Any],
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

    def hand_out(rank: int) -> None:
        nonlocal next_chunk, in_flight
        if next_chunk < len(chunks):
            start, stop = chunks[next_chunk]
            par._send((next_chunk, semantics.take_block(data, start, stop)), rank, CollTag.MAP_TASK, Space.COLL)
            next_chunk += 1
            in_flight += 1

    def collect(block: bool) -> bool:
        nonlocal in_flight
        got = par._recv_any(CollTag.MAP_RESULT, Space.COLL, block)
        if got is None:
            return False
        source, (index, result) = got
        results[index] = result
        in_flight -= 1
        if bar is not None:
            start, stop = chunks[index]
            bar.update(stop - start)
        hand_out(source)
        return True

    others = [rank for rank in range(par.nprocs) if rank != root]
    for _ in range(PREFETCH):
        for rank in others:
            hand_out(rank)
    while next_chunk < len(chunks):
        while collect(block=False):
            pass
        if next_chunk >= len(chunks):
            break
        index = next_chunk
        next_chunk += 1
        start, stop = chunks[index]
        results[index] = _root_chunk(func, semantics.root_block(data, start, stop), vectorized, bar, collect)
    while in_flight:
        collect(block=True)
    for rank in others:
        par._send(None, rank, CollTag.MAP_TASK, Space.COLL)
    return semantics.join_map_results(results, vectorized)


def _root_chunk(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    vectorized: bool,
    bar: _progress.Bar | None,
    collect: Callable[[bool], bool],
) -> Any:
    """Computes one chunk on root, item by item.

    Between items, every ``POLL_INTERVAL`` seconds, root collects the chunks
    other processes finished and hands them new ones.
    """
    if vectorized:
        return _apply_block(func, items, True, bar)
    results = []
    deadline = time.perf_counter() + POLL_INTERVAL
    for item in items:
        results.append(func(item))
        if bar is not None:
            bar.update(1)
        if time.perf_counter() >= deadline:
            while collect(False):
                pass
            deadline = time.perf_counter() + POLL_INTERVAL
    return results


def _dynamic_worker(par: Parallelizer, func: Callable[[Any], Any], root: int, vectorized: bool) -> None:
    while True:
        task = par._recv(root, CollTag.MAP_TASK, Space.COLL)
        if task is None:
            return None
        index, items = task
        result = func(items) if vectorized else list(map(func, items))
        par._send((index, result), root, CollTag.MAP_RESULT, Space.COLL)
