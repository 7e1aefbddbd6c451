"""Small collectives of an int on local processes: ours against MPICH on the same machine, in one run.

``python -m benchmarks.small_local`` times, on 2, 3 and 4 processes (3 and 4
oversubscribe a 2-core machine: those figures are information, with no
target, kept so that a change making 2 processes faster is seen if it makes
oversubscribed runs slower):

* ours: ``MultiprocessingParallelizer(nprocs=N)`` (main and N - 1 workers)
  inside one ``run``: ``allreduce``, ``broadcast``, ``gather`` and
  ``allgather`` of an int, and ``barrier``; the workers stay alive across samples (``with par:``);
* MPICH: one ``mpiexec -n N`` job of mpi4py's lowercase ``allreduce``,
  ``bcast``, ``gather`` and ``allgather`` of the same int, and ``Barrier``. MPICH busy-polls
  while it waits, so on fewer cores than ranks each call can wait for the
  scheduler: the oversubscribed jobs make fewer calls, under a timeout.

Each is timed one call at a time, each call right after a barrier (how a
solver calls them between other work), and in a loop; the five operations
take turns. Every sample is the slowest process's time per call. The N runs
go one after the other: ours on N processes, then MPICH on N.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .context import entry_point, find_mpiexec, forward_args, launch, mpi_command, relative
from .harness import ALONE, LOOP, Report, measure, measure_alone, read_json, write_json

MODULE = "benchmarks.small_local"
NPROCS = (2, 3, 4)
CORES = 2
"""The cores this suite is run on: beyond them a run is oversubscribed (information only)."""
TARGET = 2.0
"""Issue 15: allreduce of an int on 2 local processes, one call alone, at most 2x MPICH's cost."""
TARGET_OP = "allreduce int"
TARGET_NPROCS = 2
OURS = "ours (multiprocessing)"
PEERS = {
    "allreduce int": "MPICH allreduce",
    "broadcast int": "MPICH bcast",
    "gather int": "MPICH gather",
    "allgather int": "MPICH allgather",
    "barrier": "MPICH Barrier",
}
"""Our operation -> the MPICH system it is compared with (mpi4py's lowercase calls, ``Barrier``)."""
MPI_JOB_TIMEOUT = 60.0
"""Seconds one MPICH job may take (an oversubscribed one can be very slow)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """How many samples and calls one run on N processes makes.

    Attributes:
        repeats: Samples per operation, for each way of calling.
        calls: Calls per sample of :func:`measure_alone`.
        warmup: Untimed calls per operation first.
        max_inner: At most this many calls per sample of :func:`measure`.
    """

    repeats: int
    calls: int
    warmup: int
    max_inner: int


def plan(nprocs: int, quick: bool) -> Plan:
    """The samples of a run on ``nprocs`` processes: fewer when oversubscribed, fewer with ``--quick``."""
    if nprocs <= CORES:
        return Plan(repeats=5, calls=100, warmup=50, max_inner=2000) if quick else Plan(15, 400, 200, 2000)
    return Plan(repeats=5, calls=30, warmup=10, max_inner=200) if quick else Plan(11, 100, 30, 400)


def _time(
    cases: dict[str, Callable[[], Any]], steps: Plan, sync: Callable[[], Any], agree: Callable[[float], float]
) -> dict[str, dict[str, list[float]]]:
    """Every case alone after a barrier, then in a loop; ``{ALONE or LOOP: {op: samples}}``."""
    alone = measure_alone(cases, repeats=steps.repeats, calls=steps.calls, warmup=steps.warmup, sync=sync, agree=agree)
    looped = measure(
        cases,
        repeats=steps.repeats,
        warmup=steps.warmup,
        min_time=0.02,
        max_inner=steps.max_inner,
        sync=sync,
        agree=agree,
    )
    return {ALONE: alone, LOOP: looped}


def bench_ranks(quick: bool, parallelizer: Any = None) -> dict[str, dict[str, list[float]]]:
    """Runs on every local process of the group; main returns the samples."""
    par = parallelizer
    root = par.on_main

    def agree(seconds: float) -> float:
        return float(max(par.allgather(seconds)))

    cases: dict[str, Callable[[], Any]] = {
        "allreduce int": lambda: par.allreduce(7),
        "broadcast int": lambda: par.broadcast(7 if root else None),
        "gather int": lambda: par.gather(7),
        "allgather int": lambda: par.allgather(7),
        "barrier": par.barrier,
    }
    return _time(cases, plan(par.nprocs, quick), par.barrier, agree)


def run_child(args: argparse.Namespace) -> None:
    """Every rank of one MPICH job: times mpi4py's calls; rank 0 writes the samples."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    root = comm.Get_rank() == 0

    def agree(seconds: float) -> float:
        return float(comm.allreduce(seconds, op=MPI.MAX))

    cases: dict[str, Callable[[], Any]] = {
        "allreduce int": lambda: comm.allreduce(7, op=MPI.SUM),
        "broadcast int": lambda: comm.bcast(7 if root else None, root=0),
        "gather int": lambda: comm.gather(7, root=0),
        "allgather int": lambda: comm.allgather(7),
        "barrier": comm.Barrier,
    }
    samples = _time(cases, plan(comm.Get_size(), args.quick), comm.Barrier, agree)
    if root:
        library = " ".join(MPI.Get_library_version().split()[:3])
        write_json(Path(args.child.partition(":")[2]), {"mpi_library": library, "samples": samples})


def _op(op: str, how: str, nprocs: int) -> str:
    """The name of a case: ``"allreduce int (alone after a barrier), 2 processes"``."""
    return f"{op}{how}, {nprocs} processes"


def _note(nprocs: int) -> str:
    return f"{nprocs} processes on {CORES} cores: oversubscribed" if nprocs > CORES else ""


def _run_ours(report: Report, nprocs: int, quick: bool) -> None:
    from parallelizer import MultiprocessingParallelizer, OversubscriptionWarning

    this = importlib.import_module(MODULE)  # pickled by reference, also when run as __main__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OversubscriptionWarning)  # oversubscribed on purpose
        par = MultiprocessingParallelizer(nprocs=nprocs)
    with par:
        report.extra.setdefault("start_method", par.start_method)
        samples = par.run(this.bench_ranks, quick)
    for how, per_op in samples.items():
        for op, values in per_op.items():
            report.add(_op(op, how, nprocs), OURS, values, note=_note(nprocs))


def _run_mpich(report: Report, args: argparse.Namespace, mpiexec: str, nprocs: int) -> None:
    part = Path(args.results) / f"small_local.mpich{nprocs}.tmp"
    part.unlink(missing_ok=True)
    command = mpi_command(mpiexec, nprocs, MODULE, *forward_args(args), "--child", f"mpi:{part}")
    try:
        launch(command, min(args.timeout, MPI_JOB_TIMEOUT))
        result = read_json(part)
    except (RuntimeError, OSError) as exc:
        print(f"small_local: the MPICH job on {nprocs} processes failed: {exc}", flush=True)
        job = f"mpiexec -n {nprocs}"
        report.extra.setdefault("failed", []).append({"job": job, "hung": False, "error": relative(str(exc))})
        return
    finally:
        part.unlink(missing_ok=True)
    report.extra["mpi_library"] = result["mpi_library"]
    for how, per_op in result["samples"].items():
        for op, values in per_op.items():
            report.add(_op(op, how, nprocs), PEERS[op], values, note=_note(nprocs))


def compare(report: Report) -> None:
    """Ours against MPICH, per process count; the target only for one allreduce alone on 2 processes."""
    for nprocs in NPROCS:
        section = f"Local small collectives of an int, {nprocs} processes: ours vs MPICH"
        if nprocs > CORES:
            section += f" (oversubscribed: {CORES} cores; information, no target)"
        for op, peer in PEERS.items():
            for how in (ALONE, LOOP):
                case = _op(op, how, nprocs)
                targeted = op == TARGET_OP and how == ALONE and nprocs == TARGET_NPROCS
                ours, theirs = report.find(case, OURS), report.find(case, peer)
                report.compare(section, case, ours, theirs, kind="cost", target=TARGET if targeted else None)


def run(args: argparse.Namespace) -> Report:
    """Ours on N processes, then MPICH on N, for each N; then reports."""
    mpiexec = find_mpiexec(args.mpiexec)
    report = Report("small_local", "Local small collectives of an int: ours (multiprocessing) vs MPICH", args)
    report.extra["nprocs"] = list(NPROCS)
    for nprocs in NPROCS:
        _run_ours(report, nprocs, args.quick)
        _run_mpich(report, args, mpiexec, nprocs)
    return report.finish(compare)


def main() -> None:
    """Runs the benchmark, or is one rank of one of its MPICH jobs."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
