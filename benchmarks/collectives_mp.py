"""Array collectives on local processes: ours against ``multiprocessing.Pool`` and memcpy, in one run.

``python -m benchmarks.collectives_mp`` times, for every size (float64,
1 MiB to 256 MiB), on 2 processes:

* ours: ``MultiprocessingParallelizer(nprocs=2)`` (main and one worker) inside
  one ``run``: ``broadcast``, ``scatter``, ``gather``, ``allgather``,
  ``allreduce`` and a ``scatter`` followed by a ``gather`` (the round trip of
  a data-parallel step); the workers stay alive across samples (``with par:``);
* ours with ``out=`` (``broadcast``, ``scatter``, ``gather``, ``allgather``,
  ``allreduce`` into arrays allocated once): against ours without ``out=``
  and memcpy;
* ``multiprocessing.Pool(2).map`` over the ``np.array_split`` blocks (what a
  user would otherwise write): the blocks go to the workers (``scatter``),
  come back (``gather``: each worker returns a block it holds, main
  concatenates), or both (round trip: ``map`` of the identity, then
  ``np.concatenate``). The pool's two workers do the work; main waits;
* one ``np.copyto`` of the whole array into a warm one: the memory-bandwidth
  limit (at 1 MiB the copy stays in the CPU caches, so the ratio there is
  not a bandwidth figure and carries no target).

Every sample of ours is the slowest process's time per call.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
from collections.abc import Callable
from typing import Any

import numpy as np

from .context import entry_point
from .harness import MiB, Report, measure

MODULE = "benchmarks.collectives_mp"
NPROCS = 2
SIZES = (1, 4, 16, 64, 256)
QUICK_SIZES = (1, 16, 256)
OURS = "ours (multiprocessing)"
OURS_OUT = "ours (multiprocessing, out=)"
OUT_OPS = ("broadcast", "scatter", "gather", "allgather", "allreduce")
POOL = "Pool.map (array_split)"
OPS = ("broadcast", "scatter", "gather", "allgather", "allreduce", "scatter+gather")
MEMCPY_TARGET = 0.5
MEMCPY_TARGET_FROM = 16 * MiB
POOL_TARGET = 4.0
SECTION = "Local-process array collectives (2 processes, float64)"


def _copy_case(nbytes: int) -> Callable[[], Any]:
    src = np.arange(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def _our_cases(par: Any, nbytes: int) -> dict[str, Callable[[], Any]]:
    root = par.on_main
    full = np.arange(nbytes // 8, dtype=np.float64)  # every process has one: allreduce needs it
    mine = np.array_split(full, par.nprocs)[par.id].copy()
    whole, block = np.empty_like(full), np.empty_like(mine)  # the out= arrays, allocated once
    return {
        "broadcast": lambda: par.broadcast(full if root else None),
        "scatter": lambda: par.scatter(full if root else None),
        "gather": lambda: par.gather(mine),
        "allgather": lambda: par.allgather(mine),
        "allreduce": lambda: par.allreduce(full),
        "scatter+gather": lambda: par.gather(par.scatter(full if root else None)),
        "broadcast (out=)": lambda: par.broadcast(full if root else None, out=full if root else whole),
        "scatter (out=)": lambda: par.scatter(full if root else None, out=block),
        "gather (out=)": lambda: par.gather(mine, out=whole if root else None),
        "allgather (out=)": lambda: par.allgather(mine, out=whole),
        "allreduce (out=)": lambda: par.allreduce(full, out=whole),
        "memcpy": _copy_case(nbytes) if root else lambda: None,
    }


def bench_ranks(sizes: list[int], repeats: int, parallelizer: Any = None) -> dict[int, dict[str, list[float]]]:
    """Runs on every process of the group; main returns the samples per size."""
    par = parallelizer

    def agree(seconds: float) -> float:
        return float(max(par.allgather(seconds)))

    results = {}
    for mib in sizes:
        cases = _our_cases(par, mib * MiB)
        results[mib * MiB] = measure(cases, repeats=repeats, warmup=2, min_time=0.02, sync=par.barrier, agree=agree)
        del cases
    return results


# Pool workers: module-level functions, pickled by reference.
_held: dict[int, np.ndarray] = {}


def _nbytes(block: np.ndarray) -> int:
    return int(block.nbytes)


def _identity(block: np.ndarray) -> np.ndarray:
    return block


def _held_block(length: int) -> np.ndarray:
    """A block this worker already holds (its pages warm), as a gather's input."""
    if length not in _held:
        _held[length] = np.arange(length, dtype=np.float64)
    return _held[length]


def _pool_cases(pool: Any, nbytes: int) -> dict[str, Callable[[], Any]]:
    full = np.arange(nbytes // 8, dtype=np.float64)
    lengths = [len(block) for block in np.array_split(full, NPROCS)]
    return {
        "scatter": lambda: pool.map(_nbytes, np.array_split(full, NPROCS)),
        "gather": lambda: np.concatenate(pool.map(_held_block, lengths)),
        "scatter+gather": lambda: np.concatenate(pool.map(_identity, np.array_split(full, NPROCS))),
    }


def bench_pool(sizes: list[int], repeats: int, warmup: int) -> dict[int, dict[str, list[float]]]:
    """The same operations with ``multiprocessing.Pool(NPROCS).map``."""
    results = {}
    with multiprocessing.Pool(NPROCS) as pool:
        for mib in sizes:
            cases = _pool_cases(pool, mib * MiB)
            results[mib * MiB] = measure(cases, repeats=repeats, warmup=warmup, min_time=0.02)
            del cases
    return results


def compare(report: Report) -> None:
    """Our figures against Pool.map's and memcpy's."""
    sizes = sorted({t.size for t in report.timings if t.size is not None})
    for op in OPS:
        for nbytes in sizes:
            ours = report.find(op, OURS, nbytes)
            case = f"{op} {nbytes // MiB} MiB"
            target = POOL_TARGET if op == "scatter+gather" else None
            report.compare(SECTION, case, ours, report.find(op, POOL, nbytes), target=target)
            target = MEMCPY_TARGET if op == "scatter+gather" and nbytes >= MEMCPY_TARGET_FROM else None
            report.compare(SECTION, case, ours, report.find("memcpy", "np.copyto", nbytes), target=target)
            if op in OUT_OPS:
                into = report.find(op, OURS_OUT, nbytes)
                report.compare(SECTION, case, into, ours)
                report.compare(SECTION, case, into, report.find("memcpy", "np.copyto", nbytes))


def run(args: argparse.Namespace) -> Report:
    """Measures ours, then the pool (never both at once), and reports."""
    from parallelizer import MultiprocessingParallelizer

    this = importlib.import_module(MODULE)  # pickled by reference, also when run as __main__
    sizes = list(QUICK_SIZES if args.quick else SIZES)
    repeats = 5 if args.quick else 7
    report = Report("collectives_mp", "Local-process array collectives: ours vs Pool.map vs memcpy", args)
    report.extra["nprocs"] = NPROCS
    with MultiprocessingParallelizer(nprocs=NPROCS) as par:
        report.extra["start_method"] = par.start_method
        ours = par.run(this.bench_ranks, sizes, repeats)
    for nbytes, samples in ours.items():
        for name, values in samples.items():
            op = name.removesuffix(" (out=)")
            system = "np.copyto" if op == "memcpy" else OURS if op == name else OURS_OUT
            report.add(op, system, values, size=nbytes, work=nbytes)
    pool = this.bench_pool(sizes, 3, 1) if args.quick else this.bench_pool(sizes, repeats, 2)  # ~2 s a call at 256 MiB
    for nbytes, samples in pool.items():
        for op, values in samples.items():
            report.add(op, POOL, values, size=nbytes, work=nbytes, note="Pool(2) default start method")
    return report.finish(compare)


def main() -> None:
    """Runs the benchmark in this process."""
    entry_point(__doc__, run)


if __name__ == "__main__":
    main()
