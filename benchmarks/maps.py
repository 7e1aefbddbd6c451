"""``map`` throughput serially and on local processes: ours against the usual pools, in one run.

``python -m benchmarks.maps`` times two workloads (see :mod:`benchmarks.workloads`):
100,000 trivial items and 1,000 items of 1 ms, on

* ours: ``SerialNonParallelizer().map``; ``MultiprocessingParallelizer(nprocs=2)``
  with ``schedule="static"`` and ``"dynamic"``, called SPMD inside ``run`` and
  by main alone in a ``ClientServerRunner`` client (how ``pool=`` / ``workers=``
  users call it); the workers stay alive across samples (``with par:``);
* the builtin ``map``; ``multiprocessing.Pool(2).map`` (default chunk size);
  ``concurrent.futures.ProcessPoolExecutor(2).map`` with its default
  ``chunksize=1`` and with Pool's chunk size; ``schwimmbad.MultiPool(2).map``;
  ``joblib.Parallel(n_jobs=2)`` (default loky backend, automatic batching).

Every system gets the same list of ints and the same module-level function,
is warmed up with one small map first (workers started), and keeps its
workers across samples. Ours uses main and one worker; the pools use two
workers while main waits. The 1 ms workload is also judged against the
ideal: the builtin map's time over 2 processes.
"""

from __future__ import annotations

import argparse
import importlib
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from . import workloads
from .context import entry_point
from .harness import Report
from .workloads import TASKS_1MS, TRIVIAL, WORKLOADS, Workload, call_samples

NPROCS = 2
POOL_TARGET = 1.0
SERIAL_TARGET = 1.2
IDEAL_TARGET = 0.95
SECTION = "map on local processes (2 processes)"
SERIAL_SECTION = "map, serial"
OURS_STATIC = ("ours (multiprocessing, static)", "ours (multiprocessing, client/server static)")
OURS_DYNAMIC = ("ours (multiprocessing, dynamic)", "ours (multiprocessing, client/server dynamic)")
IDEAL = "ideal (builtin map time / 2)"


def _add(report: Report, workload: Workload, system: str, samples: list[float], note: str = "") -> None:
    report.add(workload.name, system, samples, size=workload.items, work=workload.items, note=note)


def bench_ours(report: Report, quick: bool) -> None:
    """Our serial and multiprocessing maps."""
    from parallelizer import ClientServerRunner, MultiprocessingParallelizer, SerialNonParallelizer

    serial = SerialNonParallelizer()
    for workload in WORKLOADS:
        count = workloads.repeats(workload, quick)
        _add(
            report,
            workload,
            "builtin map",
            call_samples(lambda data, w=workload: list(map(w.func, data)), workload, count),
        )
        _add(
            report,
            workload,
            "ours (serial)",
            call_samples(lambda data, w=workload: serial.map(w.func, data), workload, count),
        )
    this = importlib.import_module("benchmarks.workloads")  # pickled by reference
    with MultiprocessingParallelizer(nprocs=NPROCS) as par:
        for workload in WORKLOADS:
            count = workloads.repeats(workload, quick)
            for schedule in ("static", "dynamic"):
                samples = par.run(this.spmd_samples, workload.name, schedule, count)
                _add(report, workload, f"ours (multiprocessing, {schedule})", samples, "SPMD, inside run")
                runner = ClientServerRunner(this.client_samples, parallelizer=par)
                samples = runner.run(workload.name, schedule, count)
                _add(
                    report,
                    workload,
                    f"ours (multiprocessing, client/server {schedule})",
                    samples,
                    "main alone calls map",
                )


def _pool_chunksize(items: int) -> int:
    """The chunk size ``Pool.map`` picks by default (4 chunks per worker)."""
    return math.ceil(items / (NPROCS * 4))


def bench_peers(report: Report, quick: bool) -> None:
    """The pools a user would otherwise pick, one after the other."""
    import joblib
    import schwimmbad

    def each(system: str, call: Callable[[Workload], Callable[[list[int]], Any]], note: str = "") -> None:
        for workload in WORKLOADS:
            count = workloads.repeats(workload, quick)
            if system.endswith("chunksize=1)") and workload is TRIVIAL:
                count = 1  # 100k items one by one: ~10 s a sample
            _add(report, workload, system, call_samples(call(workload), workload, count), note)

    with multiprocessing.Pool(NPROCS) as pool:
        each("multiprocessing Pool.map", lambda w: lambda data: pool.map(w.func, data), "default chunksize")
    with ProcessPoolExecutor(NPROCS) as executor:
        each(
            "ProcessPoolExecutor.map (chunksize=1)", lambda w: lambda data: list(executor.map(w.func, data)), "default"
        )
        each(
            "ProcessPoolExecutor.map (Pool's chunksize)",
            lambda w: lambda data: list(executor.map(w.func, data, chunksize=_pool_chunksize(len(data)))),
        )
    with schwimmbad.MultiPool(NPROCS) as multipool:
        each("schwimmbad MultiPool.map", lambda w: lambda data: multipool.map(w.func, data))
    with joblib.Parallel(n_jobs=NPROCS) as parallel:
        each(
            "joblib Parallel (loky)",
            lambda w: lambda data: parallel(joblib.delayed(w.func)(x) for x in data),
            "n_jobs=2, batch_size='auto'",
        )


def add_ideal(report: Report, nprocs: int) -> None:
    """The ideal time of the 1 ms workload: the builtin map's over ``nprocs``."""
    builtin = report.find(TASKS_1MS.name, "builtin map")
    if builtin is not None:
        samples = [workloads.ideal_seconds(s, nprocs) for s in builtin.samples]
        _add(report, TASKS_1MS, f"ideal (builtin map time / {nprocs})", samples)


def compare(report: Report) -> None:
    """Our figures against the peers', with the targets."""
    find = report.find
    for workload in WORKLOADS:
        report.compare(
            SERIAL_SECTION,
            workload.name,
            find(workload.name, "ours (serial)"),
            find(workload.name, "builtin map"),
            kind="cost",
            target=SERIAL_TARGET,
        )
    peers = [t.system for t in report.timings if t.op == TRIVIAL.name and not t.system.startswith(("ours", "builtin"))]
    for workload in WORKLOADS:
        for ours in (*OURS_STATIC, *OURS_DYNAMIC):
            for peer in peers:
                target = (
                    POOL_TARGET if workload is TRIVIAL and ours in OURS_STATIC and peer.endswith("Pool.map") else None
                )
                report.compare(
                    SECTION, workload.name, find(workload.name, ours), find(workload.name, peer), target=target
                )
    for ours in (*OURS_DYNAMIC, *OURS_STATIC):
        target = IDEAL_TARGET if ours in OURS_DYNAMIC else None
        report.compare(SECTION, TASKS_1MS.name, find(TASKS_1MS.name, ours), find(TASKS_1MS.name, IDEAL), target=target)


def run(args: argparse.Namespace) -> Report:
    """Measures ours, then every peer, and reports."""
    report = Report("maps", "map throughput, serial and local processes: ours vs pools", args)
    report.extra["nprocs"] = NPROCS
    bench_ours(report, args.quick)
    bench_peers(report, args.quick)
    add_ideal(report, NPROCS)
    return report.finish(compare)


def main() -> None:
    """Runs the benchmark in this process."""
    entry_point(__doc__, run)


if __name__ == "__main__":
    main()
