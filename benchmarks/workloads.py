"""The functions every map benchmark applies (importable by every worker of every system).

* ``square``: a trivial item (the map's own overhead is all there is);
* ``spin_1ms``: an item that takes 1 ms of wall time, busy (a CPU-bound task
  of known length; spinning on the clock keeps its length fixed whatever
  else the machine runs);
* ``noop``: nothing, for start-up times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

TASK_SECONDS = 0.001


def square(x: int) -> int:
    """A trivial item."""
    return x * x


def spin_1ms(x: int) -> int:
    """Spins for ``TASK_SECONDS`` of wall time."""
    deadline = time.perf_counter() + TASK_SECONDS
    while time.perf_counter() < deadline:
        pass
    return x


def noop(*args: Any, **kwargs: Any) -> None:
    """Does nothing."""
    return None


class Workload(NamedTuple):
    """A map benchmark: ``func`` over ``range(items)``."""

    name: str
    func: Callable[[int], int]
    items: int
    repeats: int
    quick_repeats: int


TRIVIAL = Workload("map 100k trivial", square, 100_000, 7, 3)
TASKS_1MS = Workload("map 1000 x 1 ms", spin_1ms, 1000, 3, 2)
WORKLOADS = (TRIVIAL, TASKS_1MS)
WARMUP_ITEMS = 40
"""Items of the untimed first map of every system (starts its workers, imports)."""


def repeats(workload: Workload, quick: bool) -> int:
    """Samples per system."""
    return workload.quick_repeats if quick else workload.repeats


def by_name(name: str) -> Workload:
    """The workload called ``name``."""
    return next(workload for workload in WORKLOADS if workload.name == name)


def ideal_seconds(serial_seconds: float, nprocs: int) -> float:
    """The time of a perfect split of work that takes ``serial_seconds`` on one process."""
    return serial_seconds / nprocs


# ours: the timing loops, run inside parallelizer code (every backend)


def spmd_samples(name: str, schedule: str, count: int, parallelizer: Any = None) -> list[float] | None:
    """SPMD: every process calls ``map``; main times it. Returns main's samples."""
    par = parallelizer
    workload = by_name(name)
    data = list(range(workload.items)) if par.on_main else None
    par.map(workload.func, data[:WARMUP_ITEMS] if data is not None else None, schedule=schedule)
    samples = []
    for _ in range(count):
        par.barrier()
        began = time.perf_counter()
        par.map(workload.func, data, schedule=schedule)
        samples.append(time.perf_counter() - began)
    return samples if par.on_main else None


def client_samples(name: str, schedule: str, count: int, parallelizer: Any = None) -> list[float]:
    """Client/server: main alone calls ``map`` (the others serve); main times it."""
    workload = by_name(name)
    data = list(range(workload.items))
    parallelizer.map(workload.func, data[:WARMUP_ITEMS], schedule=schedule)
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        parallelizer.map(workload.func, data, schedule=schedule)
        samples.append(time.perf_counter() - began)
    return samples


def call_samples(call: Callable[[list[int]], Any], workload: Workload, count: int) -> list[float]:
    """Times ``call(data)`` (a peer's map) after one small untimed call."""
    data = list(range(workload.items))
    call(data[:WARMUP_ITEMS])
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        call(data)
        samples.append(time.perf_counter() - began)
    return samples
