"""Small objects and objects holding large arrays under MPI: ours against raw mpi4py, in one job.

``python -m benchmarks.latency_mpi`` launches itself as one ``mpiexec -n 2``
job and times:

* the latency of ``broadcast`` of a small dict, ``allreduce`` of a float and
  ``barrier``: ours against mpi4py's lowercase ``bcast``/``allreduce`` (what
  one uses for Python objects), ``Allreduce`` of a one-element array and
  ``Barrier``;
* one call at a time, each right after a barrier (how a solver calls them
  between other work), and in a loop: ``broadcast``, ``gather``,
  ``allgather``, ``reduce`` and ``allreduce`` of an int and ``barrier``,
  ours against mpi4py's lowercase calls and ``Barrier``;
* ``broadcast`` of a dict holding a 64 MiB float64 array and a few small
  fields: ours (the array travels as a buffer, never pickled) against
  mpi4py's lowercase ``bcast`` (pickles it) and, as the floor, raw ``Bcast``
  of the array alone into a preallocated or a new array (the raw call is told
  the size; ours finds out the object's structure itself).

Every sample is the slowest rank's time per call.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from .context import mpi_entry_point
from .harness import ALONE, LOOP, MiB, Report, measure, measure_alone, mpi_job

MODULE = "benchmarks.latency_mpi"
NPROCS = 2
SMALL = {"step": 12, "name": "chain-3", "temperature": 1.5, "flags": (True, False)}
ARRAY_MIB = 64
BCAST_TARGET = 1.3
OBJECT_TARGET = 5.0


def _small_cases(par: Any, comm: Any, MPI: Any) -> dict[str, dict[str, Callable[[], Any]]]:
    root = comm.Get_rank() == 0
    one = np.ones(1)
    out = np.empty(1)
    return {
        "broadcast small dict": {
            "ours (MPI)": lambda: par.broadcast(SMALL if root else None),
            "mpi4py bcast": lambda: comm.bcast(SMALL if root else None, root=0),
        },
        "allreduce float": {
            "ours (MPI)": lambda: par.allreduce(1.5),
            "mpi4py allreduce": lambda: comm.allreduce(1.5, op=MPI.SUM),
            "mpi4py Allreduce (1-element array)": lambda: comm.Allreduce(one, out, op=MPI.SUM),
        },
        "barrier": {
            "ours (MPI)": par.barrier,
            "mpi4py Barrier": comm.Barrier,
            "mpi4py barrier": comm.barrier,
        },
    }


def _int_cases(par: Any, comm: Any, MPI: Any) -> dict[str, dict[str, Callable[[], Any]]]:
    root = comm.Get_rank() == 0
    return {
        "broadcast int": {
            "ours (MPI)": lambda: par.broadcast(7 if root else None),
            "mpi4py bcast": lambda: comm.bcast(7 if root else None, root=0),
        },
        "gather int": {"ours (MPI)": lambda: par.gather(7), "mpi4py gather": lambda: comm.gather(7, root=0)},
        "allgather int": {"ours (MPI)": lambda: par.allgather(7), "mpi4py allgather": lambda: comm.allgather(7)},
        "reduce int": {
            "ours (MPI)": lambda: par.reduce(7),
            "mpi4py reduce": lambda: comm.reduce(7, op=MPI.SUM, root=0),
        },
        "allreduce int": {
            "ours (MPI)": lambda: par.allreduce(7),
            "mpi4py allreduce": lambda: comm.allreduce(7, op=MPI.SUM),
        },
        "barrier": {"ours (MPI)": par.barrier, "mpi4py Barrier": comm.Barrier},
    }


ALONE_TARGET = 1.1
BARRIER_TARGET = 1.05


def _object_cases(par: Any, comm: Any) -> dict[str, Callable[[], Any]]:
    root = comm.Get_rank() == 0
    array = np.arange(ARRAY_MIB * MiB // 8, dtype=np.float64)
    obj = {"samples": array, "step": 12, "name": "chain-3", "shape": array.shape}
    warm = array if root else np.empty_like(array)
    return {
        "ours (MPI)": lambda: par.broadcast(obj if root else None),
        "mpi4py bcast (pickle)": lambda: comm.bcast(obj if root else None, root=0),
        "mpi4py Bcast of the array (warm)": lambda: comm.Bcast(warm, root=0),
        "mpi4py Bcast of the array (fresh)": lambda: comm.Bcast(array if root else np.empty_like(array), root=0),
    }


def run_ranks(args: argparse.Namespace) -> None:
    """The job itself (every rank runs it)."""
    title = "MPI small objects and objects holding arrays: ours vs raw mpi4py"
    MPI, comm, par, agree, report = mpi_job("latency_mpi", title, args)
    rank = comm.Get_rank()
    repeats = 7 if args.quick else 15
    for op, cases in _small_cases(par, comm, MPI).items():
        samples = measure(cases, repeats=repeats, warmup=200, min_time=0.02, sync=comm.Barrier, agree=agree)
        for system, values in samples.items():
            report.add(op, system, values)
    for op, cases in _int_cases(par, comm, MPI).items():
        alone = measure_alone(cases, repeats=repeats, calls=100 if args.quick else 400, sync=comm.Barrier, agree=agree)
        looped = measure(cases, repeats=repeats, warmup=200, min_time=0.02, sync=comm.Barrier, agree=agree)
        for system in cases:
            report.add(op + ALONE, system, alone[system])
            report.add(op + LOOP, system, looped[system])
    op = f"broadcast dict with {ARRAY_MIB} MiB array"
    samples = measure(
        _object_cases(par, comm), repeats=5 if args.quick else 9, warmup=2, sync=comm.Barrier, agree=agree
    )
    for system, values in samples.items():
        report.add(op, system, values, size=ARRAY_MIB * MiB, work=ARRAY_MIB * MiB)
    if rank != 0:
        return
    report.finish(compare)


def compare(report: Report) -> None:
    """Our figures against the peers'."""
    section = "MPI small-object latency (2 ranks)"
    find = report.find
    ours = find("broadcast small dict", "ours (MPI)")
    report.compare(
        section,
        "broadcast small dict",
        ours,
        find("broadcast small dict", "mpi4py bcast"),
        kind="cost",
        target=BCAST_TARGET,
    )
    ours = find("allreduce float", "ours (MPI)")
    for peer in ("mpi4py allreduce", "mpi4py Allreduce (1-element array)"):
        report.compare(section, "allreduce float", ours, find("allreduce float", peer), kind="cost")
    ours = find("barrier", "ours (MPI)")
    for peer in ("mpi4py Barrier", "mpi4py barrier"):
        report.compare(section, "barrier", ours, find("barrier", peer), kind="cost")
    section = "MPI small collectives, one call alone after a barrier and in a loop (2 ranks, an int)"
    for op, peer in (
        ("broadcast int", "mpi4py bcast"),
        ("gather int", "mpi4py gather"),
        ("allgather int", "mpi4py allgather"),
        ("reduce int", "mpi4py reduce"),
        ("allreduce int", "mpi4py allreduce"),
        ("barrier", "mpi4py Barrier"),
    ):
        target = BARRIER_TARGET if op == "barrier" else ALONE_TARGET
        for how in (ALONE, LOOP):
            ours = find(op + how, "ours (MPI)")
            goal = target if how == ALONE else None  # issue 15's targets are for calls alone
            report.compare(section, op + how, ours, find(op + how, peer), kind="cost", target=goal)
    section = "MPI objects holding arrays (2 ranks)"
    op = f"broadcast dict with {ARRAY_MIB} MiB array"
    ours = find(op, "ours (MPI)")
    report.compare(section, op, ours, find(op, "mpi4py bcast (pickle)"), target=OBJECT_TARGET)
    for flavour in ("warm", "fresh"):
        report.compare(section, op, ours, find(op, f"mpi4py Bcast of the array ({flavour})"))


def main() -> None:
    """Launches the ``mpiexec`` job, or is one of its ranks."""
    mpi_entry_point(__doc__, MODULE, NPROCS, run_ranks)


if __name__ == "__main__":
    main()
