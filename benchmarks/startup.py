"""Start-up: the first ``run`` of a no-op per backend, against ``Pool(2)`` and mpi4py.futures.

``python -m benchmarks.startup`` starts a fresh interpreter for every sample
(nothing is warm but the OS's file cache) and measures, inside it:

* *first result*: from constructing the parallelizer (or pool) to the
  no-op's first result: ours ``run(noop)`` inside ``with par:``; the peer's
  first ``map``/``submit``;
* *with shutdown*: the same plus leaving the ``with`` block (workers stopped);
* ``import parallelizer`` apart (the peers' modules are imported before the
  clock starts too).

Local: ours serial, ours multiprocessing (``spawn``, the default, and
``fork``), ``multiprocessing.Pool(2)`` with Python's default start method
and with ``spawn``, ``concurrent.futures.ProcessPoolExecutor(2)``.

MPI: the wall time of a whole ``mpiexec -n 2`` job, seen from outside (every
launch, interpreter and MPI start-up included): ours ``MPIParallelizer().run
(noop)``; ``python -m mpi4py.futures`` with one ``MPIPoolExecutor`` submit;
and a bare ``mpi4py`` job (``Barrier``) as the floor. Inside the job, both
are timed after MPI is initialized (``mpi4py.futures`` does that before the
script runs): ours ``MPIParallelizer()`` and ``run(noop)``; the executor's
construction and first ``submit``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .context import entry_point, find_mpiexec, forward_args, launch, mpi_command, python_module
from .harness import Report, read_json, write_json
from .workloads import noop

MODULE = "benchmarks.startup"
NPROCS = 2
LOCAL = ("serial", "mp-spawn", "mp-fork", "pool-default", "pool-spawn", "executor")
LOCAL_NAMES = {
    "serial": "ours (serial)",
    "mp-spawn": "ours (multiprocessing, spawn)",
    "mp-fork": "ours (multiprocessing, fork)",
    "pool-default": f"Pool(2) ({multiprocessing.get_start_method()})",
    "pool-spawn": "Pool(2) (spawn)",
    "executor": f"ProcessPoolExecutor(2) ({multiprocessing.get_start_method()})",
}
MPI_JOBS = {
    "mpi-ours": "ours (MPI)",
    "mpi-futures": "mpi4py.futures MPIPoolExecutor",
    "mpi-raw": "bare mpi4py job (Barrier)",
}
SECTION = "start-up: first run of a no-op"
FIGURES_LOCAL = (("import", "import parallelizer"), ("first", "first result"), ("total", "with shutdown"))
FIGURES_MPI = (("wall", "job wall time"), ("first", "first result"))


def _local_child(kind: str) -> dict[str, float]:
    """Times one start in this fresh interpreter (imports timed apart)."""
    began = time.perf_counter()
    if kind == "serial" or kind.startswith("mp-"):
        import parallelizer

        figures = {"import": time.perf_counter() - began}
        began = time.perf_counter()
        if kind == "serial":
            par = parallelizer.SerialNonParallelizer()
        else:
            par = parallelizer.MultiprocessingParallelizer(nprocs=NPROCS, start_method=kind[3:])
        with par:
            par.run(noop)
            figures["first"] = time.perf_counter() - began
    elif kind == "executor":
        figures = {}
        with ProcessPoolExecutor(NPROCS) as executor:
            list(executor.map(noop, range(NPROCS)))
            figures["first"] = time.perf_counter() - began
    else:
        figures = {}
        with multiprocessing.get_context(None if kind == "pool-default" else "spawn").Pool(NPROCS) as pool:
            pool.map(noop, range(NPROCS))
            figures["first"] = time.perf_counter() - began
    figures["total"] = time.perf_counter() - began
    return figures


def _mpi_child(kind: str) -> dict[str, float] | None:
    """Times one start inside an MPI job (rank 0 reports); MPI is initialized first, as in mpi4py.futures."""
    from mpi4py import MPI

    if kind == "mpi-ours":
        import parallelizer

        began = time.perf_counter()
        par = parallelizer.MPIParallelizer()
        par.run(noop)
        return {"first": time.perf_counter() - began} if par.on_main else None
    if kind == "mpi-futures":
        from mpi4py.futures import MPIPoolExecutor

        began = time.perf_counter()
        with MPIPoolExecutor() as executor:
            executor.submit(noop).result()
            first = time.perf_counter() - began
        return {"first": first}
    MPI.COMM_WORLD.Barrier()
    return None


def run_child(args: argparse.Namespace) -> None:
    """One fresh process (or rank): times one start and writes it."""
    kind, _, part = args.child.partition(":")
    figures = _mpi_child(kind) if kind.startswith("mpi-") else _local_child(kind)
    if figures is not None:
        write_json(Path(part), figures)


def _sample(command: list[str], part: Path, timeout: float) -> dict[str, float]:
    part.unlink(missing_ok=True)
    began = time.perf_counter()
    launch(command, timeout)
    wall = time.perf_counter() - began
    figures: dict[str, float] = read_json(part) if part.exists() else {}
    part.unlink(missing_ok=True)
    figures["wall"] = wall
    return figures


def run(args: argparse.Namespace) -> Report:
    """Starts every system ``repeats`` times, round-robin, in fresh processes."""
    repeats = 3 if args.quick else 7
    mpiexec = find_mpiexec(args.mpiexec)
    report = Report("startup", "start-up: first run of a no-op, ours vs Pool(2) vs mpi4py.futures", args)
    report.extra["python_default_start_method"] = multiprocessing.get_start_method()
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in (*LOCAL, *MPI_JOBS)}
    for _ in range(repeats):
        for kind in results:
            part = Path(args.results) / f"startup.{kind}.tmp"
            child = [*forward_args(args), "--child", f"{kind}:{part}"]
            if kind.startswith("mpi-"):
                command = mpi_command(mpiexec, NPROCS, MODULE, *child, futures=kind == "mpi-futures")
                if kind == "mpi-raw":
                    command = [mpiexec, "-n", str(NPROCS), sys.executable, "-m", MODULE, *child]
            else:
                command = python_module(MODULE, *child)
            results[kind].append(_sample(command, part, min(args.timeout, 120)))
    for kind, samples in results.items():
        name = LOCAL_NAMES.get(kind) or MPI_JOBS[kind]
        figures = FIGURES_MPI if kind.startswith("mpi-") else FIGURES_LOCAL
        for figure, label in figures:
            values = [sample[figure] for sample in samples if figure in sample]
            if values:
                report.add(label, name, values, note=f"median of {len(values)} fresh starts")
    return report.finish(compare)


def compare(report: Report) -> None:
    """Our start-up against the peers'."""
    find = report.find
    for label in ("first result", "with shutdown"):
        for ours, peers in (
            ("ours (serial)", ("pool-default",)),
            ("ours (multiprocessing, spawn)", ("pool-spawn", "pool-default", "executor")),
            ("ours (multiprocessing, fork)", ("pool-default", "executor")),
        ):
            for peer in peers:
                report.compare(SECTION, label, find(label, ours), find(label, LOCAL_NAMES[peer]))
    for peer in ("mpi-futures", "mpi-raw"):
        report.compare(
            SECTION, "job wall time", find("job wall time", "ours (MPI)"), find("job wall time", MPI_JOBS[peer])
        )
    report.compare(
        SECTION,
        "first result (in the job)",
        find("first result", "ours (MPI)"),
        find("first result", MPI_JOBS["mpi-futures"]),
        note="mpi4py.futures: MPI already initialized",
    )


def main() -> None:
    """Runs the benchmark, or is one fresh process of it."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
