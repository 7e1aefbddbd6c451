"""Submitting tasks under MPI: ours against mpi4py.futures, in one run.

``python -m benchmarks.pools_mpi`` launches two ``mpiexec -n 2`` jobs: ours
runs ``python -m parallelizer --pool`` (rank 0 runs the benchmark, rank 1
serves its executor), the peer ``python -m mpi4py.futures`` (rank 0 runs it,
rank 1 is the ``MPIPoolExecutor``'s worker). Each submits 10,000 trivial
tasks one by one (the peer's ``chunksize`` is 1: every task its own
message) and collects them, after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .context import entry_point, find_mpiexec, forward_args, launch, mpi_command
from .harness import Report, read_json, write_json
from .workloads import square

MODULE = "benchmarks.pools_mpi"
NPROCS = 2
TASKS = 10_000
SECTION = "submitting tasks under MPI (2 ranks)"
SUBMIT = f"submit {TASKS:,} trivial tasks, then collect"
OURS = "ours (executor, mpiexec -n 2 --pool)"
PEER = "mpi4py.futures MPIPoolExecutor"


def _samples(executor, repeats: int) -> list[float]:
    executor.submit(square, 1).result()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        futures = [executor.submit(square, i) for i in range(TASKS)]
        assert sum(future.result() for future in futures) == sum(i * i for i in range(TASKS))
        times.append(time.perf_counter() - began)
    return times


def run_child(args: argparse.Namespace) -> None:
    """Rank 0 of one job: times its executor."""
    kind, _, part = args.child.partition(":")
    repeats = 2 if args.quick else 5
    if kind == "ours":
        from parallelizer import Parallelizer

        with Parallelizer.lookup().executor() as executor:
            samples = _samples(executor, repeats)
    else:
        from mpi4py.futures import MPIPoolExecutor

        with MPIPoolExecutor() as executor:
            samples = _samples(executor, repeats)
    write_json(Path(part), samples)


def run(args: argparse.Namespace) -> Report:
    mpiexec = find_mpiexec(args.mpiexec)
    report = Report("pools_mpi", "submitting tasks under MPI: ours vs mpi4py.futures", args)
    report.extra["nprocs"] = NPROCS
    for kind, name in (("ours", OURS), ("peer", PEER)):
        part = Path(args.results) / f"pools_mpi.{kind}.tmp"
        child = [*forward_args(args), "--child", f"{kind}:{part}"]
        if kind == "ours":
            command = [mpiexec, "-n", str(NPROCS), sys.executable, "-m", "parallelizer", "--pool", "-m", MODULE, *child]
        else:
            command = mpi_command(mpiexec, NPROCS, MODULE, *child, futures=True)
        launch(command, args.timeout)
        report.add(SUBMIT, name, read_json(part), work=TASKS)
        part.unlink()
    return report.finish(lambda r: r.compare(SECTION, SUBMIT, r.find(SUBMIT, OURS), r.find(SUBMIT, PEER), target=5.0))


def main() -> None:
    """Runs the benchmark, or is rank 0 of one of its jobs."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
