"""Array collectives under MPI: ours against raw mpi4py and against memcpy, in one job.

``python -m benchmarks.collectives_mpi`` launches itself as one
``mpiexec -n 2`` job. For every size (float64, 8 B to 256 MiB) it times
``broadcast``, ``scatter``, ``gather``, ``allgather`` and ``allreduce`` of:

* ours: ``MPIParallelizer`` (the receiver gets a new array it owns), and
  ours with ``out=`` (into a preallocated array, as the raw *warm* calls);
* mpi4py's buffer calls (``Bcast``, ``Scatterv``, ``Gatherv``, ``Allgatherv``, ``Allreduce``)
  into a preallocated array reused every call (*warm*: its pages are mapped)
  and into a new ``np.empty`` array every call (*fresh*, what ours returns);
  the raw calls are told the sizes, ours finds them out itself;
* mpi4py's lowercase calls (``bcast``, ``scatter``, ``gather``, ``allgather``, ``allreduce``),
  which pickle (the gathered blocks are concatenated, as ours does);
* one ``np.copyto`` of the whole array into a warm one on rank 0: the
  memory-bandwidth limit of a single copy.

Raw ``Scatterv`` uses ``MPI.IN_PLACE`` on root, so root keeps its block in
place as ours does; raw ``Gatherv`` copies root's block like ours. With
``out=`` root must write its own block into ``out``, so ours with ``out=``
is compared with raw ``Scatterv`` into a preallocated receive buffer on every
rank, root included (*warm, recvbuf*): the same work. Every sample is the
slowest rank's time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from .context import mpi_entry_point
from .harness import KiB, MiB, Report, fmt_bytes, measure, mpi_job

MODULE = "benchmarks.collectives_mpi"
NPROCS = 2
SIZES = (8, KiB, 64 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB)
QUICK_SIZES = (8, 64 * KiB, MiB, 16 * MiB, 64 * MiB)
OPS = ("broadcast", "scatter", "gather", "allgather", "allreduce")
RAW = {
    "broadcast": "Bcast",
    "scatter": "Scatterv",
    "gather": "Gatherv",
    "allgather": "Allgatherv",
    "allreduce": "Allreduce",
}
ARRAY_TARGET = 0.95
OUT_TARGET = 0.98
TARGET_FROM = 64 * KiB  # issue 15's targets start at 64 KiB
SECTION = "MPI array collectives (2 ranks, float64)"


def _cases(op: str, full: np.ndarray, par: Any, comm: Any, MPI: Any) -> dict[str, Callable[[], Any]]:
    """The calls doing ``op`` on ``full`` for every system, on this rank.

    Every rank has ``full``: allreduce needs it; elsewhere only root's is used.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    root = rank == 0
    n = len(full)
    parts = np.array_split(full, size)
    counts = [len(part) for part in parts]
    displs = [int(sum(counts[:i])) for i in range(size)]
    mine = parts[rank].copy()
    raw = RAW[op]
    if op == "broadcast":
        warm = full if root else np.empty(n)
        return {
            "ours (MPI)": lambda: par.broadcast(full if root else None),
            "ours (MPI, out=)": lambda: par.broadcast(full if root else None, out=warm),
            f"mpi4py {raw} (warm)": lambda: comm.Bcast(warm, root=0),
            f"mpi4py {raw} (fresh)": lambda: comm.Bcast(full if root else np.empty(n), root=0),
            "mpi4py bcast (pickle)": lambda: comm.bcast(full if root else None, root=0),
        }
    if op == "scatter":
        spec = [full, counts, displs, MPI.DOUBLE] if root else None
        block = np.empty(counts[rank])
        return {
            "ours (MPI)": lambda: par.scatter(full if root else None),
            "ours (MPI, out=)": lambda: par.scatter(full if root else None, out=block),
            f"mpi4py {raw} (warm)": lambda: comm.Scatterv(spec, MPI.IN_PLACE if root else block, root=0),
            f"mpi4py {raw} (warm, recvbuf)": lambda: comm.Scatterv(spec, block, root=0),
            f"mpi4py {raw} (fresh)": lambda: comm.Scatterv(
                spec, MPI.IN_PLACE if root else np.empty(counts[rank]), root=0
            ),
            "mpi4py scatter (pickle)": lambda: comm.scatter(np.array_split(full, size) if root else None, root=0),
        }
    if op == "gather":
        out = np.empty(n) if root else None

        def gather_pickle() -> Any:
            got = comm.gather(mine, root=0)
            return np.concatenate(got) if root else None

        return {
            "ours (MPI)": lambda: par.gather(mine),
            "ours (MPI, out=)": lambda: par.gather(mine, out=out),
            f"mpi4py {raw} (warm)": lambda: comm.Gatherv(mine, [out, counts, displs, MPI.DOUBLE] if root else None, 0),
            f"mpi4py {raw} (fresh)": lambda: comm.Gatherv(
                mine, [np.empty(n), counts, displs, MPI.DOUBLE] if root else None, 0
            ),
            "mpi4py gather (pickle)": gather_pickle,
        }
    result = np.empty(n)
    if op == "allgather":

        def allgather_pickle() -> Any:
            return np.concatenate(comm.allgather(mine))

        spec_all = [result, counts, displs, MPI.DOUBLE]
        return {
            "ours (MPI)": lambda: par.allgather(mine),
            "ours (MPI, out=)": lambda: par.allgather(mine, out=result),
            f"mpi4py {raw} (warm)": lambda: comm.Allgatherv(mine, spec_all),
            f"mpi4py {raw} (fresh)": lambda: comm.Allgatherv(mine, [np.empty(n), counts, displs, MPI.DOUBLE]),
            "mpi4py allgather (pickle)": allgather_pickle,
        }
    return {
        "ours (MPI)": lambda: par.allreduce(full),
        "ours (MPI, out=)": lambda: par.allreduce(full, out=result),
        f"mpi4py {raw} (warm)": lambda: comm.Allreduce(full, result, op=MPI.SUM),
        f"mpi4py {raw} (fresh)": lambda: comm.Allreduce(full, np.empty(n), op=MPI.SUM),
        "mpi4py allreduce (pickle)": lambda: comm.allreduce(full, op=MPI.SUM),
    }


def _memcpy_case(nbytes: int, rank: int) -> Callable[[], Any]:
    if rank != 0:
        return lambda: None
    src = np.arange(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def run_ranks(args: argparse.Namespace) -> None:
    """The job itself (every rank runs it)."""
    MPI, comm, par, agree, report = mpi_job(
        "collectives_mpi", "MPI array collectives: ours vs raw mpi4py vs memcpy", args
    )
    rank = comm.Get_rank()
    repeats = 5 if args.quick else 7
    for nbytes in QUICK_SIZES if args.quick else SIZES:
        full = np.arange(nbytes // 8, dtype=np.float64)
        cases: dict[tuple[str, str], Callable[[], Any]] = {}
        for op in OPS:
            for system, call in _cases(op, full, par, comm, MPI).items():
                cases[(op, system)] = call
        cases[("memcpy", "np.copyto")] = _memcpy_case(nbytes, rank)
        named = {f"{op}|{system}": call for (op, system), call in cases.items()}
        samples = measure(named, repeats=repeats, warmup=2, min_time=0.02, sync=comm.Barrier, agree=agree)
        if rank == 0:
            for key, values in samples.items():
                op, system = key.split("|")
                report.add(op, system, values, size=nbytes, work=nbytes)
        del cases, named, full
        comm.Barrier()
    if rank != 0:
        return
    report.finish(compare)


def compare(report: Report) -> None:
    """Our figure against every peer's, per op and size."""
    sizes = sorted({t.size for t in report.timings if t.size is not None})
    for op in OPS:
        for nbytes in sizes:
            ours = report.find(op, "ours (MPI)", nbytes)
            case = f"{op} {fmt_bytes(nbytes)}"
            targeted = nbytes >= TARGET_FROM
            for flavour in ("warm", "fresh"):
                peer = report.find(op, f"mpi4py {RAW[op]} ({flavour})", nbytes)
                report.compare(SECTION, case, ours, peer, target=ARRAY_TARGET if targeted else None)
            # out= against raw into preallocated arrays on every rank (scatter: root's too)
            warm = report.find(op, f"mpi4py {RAW[op]} (warm{', recvbuf' if op == 'scatter' else ''})", nbytes)
            into = report.find(op, "ours (MPI, out=)", nbytes)
            report.compare(SECTION, case, into, warm, target=OUT_TARGET if targeted else None)
            pickled = next(
                (t for t in report.timings if t.op == op and t.size == nbytes and "pickle" in t.system), None
            )
            report.compare(SECTION, case, ours, pickled)
            report.compare(SECTION, case, ours, report.find("memcpy", "np.copyto", nbytes))


def main() -> None:
    """Launches the ``mpiexec`` job, or is one of its ranks."""
    mpi_entry_point(__doc__, MODULE, NPROCS, run_ranks)


if __name__ == "__main__":
    main()
