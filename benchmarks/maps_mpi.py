"""``map`` throughput under MPI: ours against schwimmbad's MPIPool and mpi4py.futures.

``python -m benchmarks.maps_mpi`` launches ``mpiexec -n 2`` jobs one after
the other (each peer needs its own launch), each under a timeout:

1. ours, one job per workload, schedule and way of calling (so a deadlock
   loses one case, and a watchdog ends it and keeps the ranks' tracebacks):
   ``MPIParallelizer`` with ``schedule="static"`` and ``"dynamic"``, SPMD
   inside ``run`` and by main alone in a ``ClientServerRunner`` client;
2. ``schwimmbad.MPIPool().map`` (rank 0 hands out items one by one, rank 1
   works);
3. ``mpi4py.futures.MPIPoolExecutor().map`` under ``python -m mpi4py.futures``
   (rank 0 runs the script, rank 1 works), with its default ``chunksize=1``
   and with ``Pool``'s chunk size.

The builtin ``map`` runs in the launching process first: the serial
reference, and the ideal of the 1 ms workload (its time over 2 ranks). Same
workloads as :mod:`benchmarks.maps` (:mod:`benchmarks.workloads`). All use the
same 2 ranks; in both peers rank 0 only hands out work, so one rank
computes, while ours computes on both.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from . import workloads
from .context import entry_point, find_mpiexec, forward_args, launch, mpi_command, relative
from .harness import Report, Timing, median, read_json, write_json
from .workloads import TASKS_1MS, TRIVIAL, WORKLOADS, call_samples

MODULE = "benchmarks.maps_mpi"
NPROCS = 2
MPIPOOL_TARGET = 10.0
IDEAL_TARGET = 0.95
SECTION = "map under MPI (2 ranks)"
OURS_STATIC = ("ours (MPI, static)", "ours (MPI, client/server static)")
OURS_DYNAMIC = ("ours (MPI, dynamic)", "ours (MPI, client/server dynamic)")
HANG_SECONDS = 30.0
"""A case of ours that takes longer than this is taken for a deadlock and ended (a third of that with --quick)."""


def _hang_seconds(args: argparse.Namespace) -> float:
    return HANG_SECONDS / 3 if args.quick else HANG_SECONDS


def jobs() -> list[str]:
    """Every job: ours case by case (a hang loses one case), then each peer."""
    names = []
    for i in range(len(WORKLOADS)):
        for schedule in ("static", "dynamic"):
            names += [f"ours/{i}/{schedule}/spmd", f"ours/{i}/{schedule}/client"]
    return [*names, "schwimmbad", "futures"]


def _part(args: argparse.Namespace, job: str) -> Path:
    return Path(args.results) / f"maps_mpi.{job}.tmp"


def _timing(workload: workloads.Workload, system: str, samples: list[float], note: str = "") -> Timing:
    return Timing(
        op=workload.name,
        system=system,
        median=median(samples),
        samples=samples,
        size=workload.items,
        work=workload.items,
        note=note,
    )


def job_ours(args: argparse.Namespace) -> list[Timing]:
    """A job of ours (every rank): one workload, schedule and mode (``ours/<i>/<schedule>/<mode>``).

    A watchdog ends the job if the maps do not finish within ``HANG_SECONDS``
    (a deadlock), leaving the ranks' tracebacks in the job's part file.
    """
    import faulthandler

    from parallelizer import ClientServerRunner, MPIParallelizer

    _, index, schedule, mode = args.child.split("/")
    workload = WORKLOADS[int(index)]
    count = workloads.repeats(workload, args.quick)
    par = MPIParallelizer()
    timings = []
    hang = _part(args, f"{args.child.replace('/', '-')}.rank{par.id}.hang")
    with hang.open("w") as stream:
        faulthandler.dump_traceback_later(_hang_seconds(args), exit=True, file=stream)
        if mode == "spmd":
            samples = par.run(workloads.spmd_samples, workload.name, schedule, count)
            system, note = f"ours (MPI, {schedule})", "SPMD, inside run"
        else:
            samples = ClientServerRunner(workloads.client_samples, parallelizer=par).run(workload.name, schedule, count)
            system, note = f"ours (MPI, client/server {schedule})", "main alone calls map"
        faulthandler.cancel_dump_traceback_later()
    hang.unlink()
    if par.on_main:
        timings.append(_timing(workload, system, samples, note))
    return timings


def job_schwimmbad(args: argparse.Namespace) -> list[Timing]:
    """The schwimmbad job (every rank): its MPIPool; rank 1 serves until the pool closes."""
    from schwimmbad import MPIPool

    timings = []
    with MPIPool() as pool:
        if not pool.is_master():
            pool.wait()
            return []
        for workload in WORKLOADS:
            count = workloads.repeats(workload, args.quick)
            samples = call_samples(lambda data, w=workload: pool.map(w.func, data), workload, count)
            timings.append(_timing(workload, "schwimmbad MPIPool.map", samples, "1 worker rank"))
    return timings


def job_futures(args: argparse.Namespace) -> list[Timing]:
    """The mpi4py.futures job (rank 0 only, under ``python -m mpi4py.futures``): MPIPoolExecutor."""
    from mpi4py.futures import MPIPoolExecutor

    timings = []
    with MPIPoolExecutor() as executor:
        for workload in WORKLOADS:
            if workload is not TRIVIAL or not args.quick:  # 100k items one by one: ~50 s a sample
                count = 1 if workload is TRIVIAL else workloads.repeats(workload, args.quick)
                samples = call_samples(lambda data, w=workload: list(executor.map(w.func, data)), workload, count)
                timings.append(
                    _timing(workload, "MPIPoolExecutor.map (chunksize=1)", samples, "default; 1 worker rank")
                )
            chunk = math.ceil(workload.items / (NPROCS * 4))
            samples = call_samples(
                lambda data, w=workload, c=chunk: list(executor.map(w.func, data, chunksize=c)),
                workload,
                workloads.repeats(workload, args.quick),
            )
            timings.append(_timing(workload, "MPIPoolExecutor.map (Pool's chunksize)", samples, "1 worker rank"))
    return timings


def run_child(args: argparse.Namespace) -> None:
    """One rank of one job: measures and (on rank 0) writes its part."""
    kind = args.child.split("/")[0]
    job = {"ours": job_ours, "schwimmbad": job_schwimmbad, "futures": job_futures}[kind]
    timings = job(args)
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == 0:
        write_json(_part(args, args.child.replace("/", "-")), [dataclasses.asdict(t) for t in timings])


def compare(report: Report) -> None:
    """Our figures against the peers', with the targets."""
    find = report.find
    peers = [t.system for t in report.timings if t.op == TRIVIAL.name and not t.system.startswith(("ours", "builtin"))]
    for workload in WORKLOADS:
        for ours in (*OURS_STATIC, *OURS_DYNAMIC):
            for peer in peers:
                target = MPIPOOL_TARGET if workload is TRIVIAL and ours in OURS_STATIC and "MPIPool." in peer else None
                report.compare(
                    SECTION, workload.name, find(workload.name, ours), find(workload.name, peer), target=target
                )
    ideal = f"ideal (builtin map time / {NPROCS})"
    for ours in (*OURS_DYNAMIC, *OURS_STATIC):
        target = IDEAL_TARGET if ours in OURS_DYNAMIC else None
        report.compare(SECTION, TASKS_1MS.name, find(TASKS_1MS.name, ours), find(TASKS_1MS.name, ideal), target=target)


def _record_failure(report: Report, args: argparse.Namespace, job: str, exc: Exception) -> None:
    """Notes a failed job, with the ranks' tracebacks if its watchdog fired."""
    tracebacks = {}
    for path in sorted(Path(args.results).glob(f"maps_mpi.{job.replace('/', '-')}.rank*.hang.tmp")):
        text = relative(path.read_text().strip())
        if text:
            tracebacks[path.name.split(".")[2]] = text.splitlines()
        path.unlink()
    hung = bool(tracebacks)
    print(f"maps_mpi: job {job} {'hung (ended by its watchdog)' if hung else 'failed'}: {exc}", flush=True)
    report.extra.setdefault("failed", []).append(
        {"job": job, "hung": hung, "error": relative(str(exc)), "tracebacks": tracebacks}
    )
    if job.startswith("ours/"):
        _, index, schedule, mode = job.split("/")
        system = f"ours (MPI, {schedule})" if mode == "spmd" else f"ours (MPI, client/server {schedule})"
        what = f"hung: ended by its watchdog after {_hang_seconds(args):g} s" if hung else "failed"
        report.add_timing(Timing(op=WORKLOADS[int(index)].name, system=system, median=math.inf, samples=[], note=what))


def run(args: argparse.Namespace) -> Report:
    """Launches the three jobs, then merges and reports their figures."""
    from .maps import add_ideal

    mpiexec = find_mpiexec(args.mpiexec)
    report = Report("maps_mpi", "map throughput under MPI: ours vs MPIPool vs MPIPoolExecutor", args)
    report.extra["nprocs"] = NPROCS
    for workload in WORKLOADS:  # the serial reference, in this plain process (no rank spinning beside it)
        samples = call_samples(
            lambda data, w=workload: list(map(w.func, data)), workload, workloads.repeats(workload, args.quick)
        )
        report.add_timing(_timing(workload, "builtin map", samples, "in the launching process"))
    for job in jobs():
        part = _part(args, job.replace("/", "-"))
        part.unlink(missing_ok=True)
        command = mpi_command(mpiexec, NPROCS, MODULE, *forward_args(args), "--child", job, futures=job == "futures")
        try:
            launch(command, args.timeout)
        except RuntimeError as exc:  # a case failing must not lose the others' figures
            _record_failure(report, args, job, exc)
            continue
        for record in read_json(part):
            report.add_timing(Timing(**record))
        part.unlink()
    add_ideal(report, NPROCS)
    return report.finish(compare)


def main() -> None:
    """Launches the jobs, or is one rank of one of them."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
