"""Peak memory of a scatter then gather of a 256 MiB array, on main: no needless copies.

``python -m benchmarks.memory`` measures, in fresh processes, how far main's
resident memory rises above what it held before (the array, created and
touched first) while it scatters the array over 2 processes and gathers the
blocks back into a new array. The peak is read from the kernel (``VmHWM``,
reset through ``/proc/self/clear_refs`` just before the operation).

The least possible is the gathered result itself: 1x the array (root's own
block is a view, the other block is received by the other process). Systems:
ours on local processes and under MPI (its first call in the process, and a
second one, when the memory of the first result can be reused); raw mpi4py
``Scatterv``/``Gatherv`` into a new array; lowercase ``scatter``/``gather``
plus ``np.concatenate``; ``Pool(2).map`` of the identity over the
``np.array_split`` blocks plus ``np.concatenate``. The other process's peak
is reported too where we can read it.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import re
from pathlib import Path
from typing import Any

import numpy as np

from .context import entry_point, find_mpiexec, forward_args, launch, mpi_command, python_module
from .harness import MiB, Report, read_json, write_json

MODULE = "benchmarks.memory"
NPROCS = 2
ARRAY_MIB = 256
TARGET = 1.1
"""Main's peak may exceed the gathered result by 10% (the least possible is 1x the array)."""
SECTION = f"peak memory on main: scatter + gather of {ARRAY_MIB} MiB (2 processes)"
OP = f"scatter+gather {ARRAY_MIB} MiB, peak extra memory"
IDEAL = "least possible: the gathered result"


def _status(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/self/status: peak memory needs Linux")
    return int(match.group(1)) * 1024


class Peak:
    """Measures how far resident memory rises above its level at entry."""

    def __enter__(self) -> Peak:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.before = _status("VmRSS")
        self.extra = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.extra = _status("VmHWM") - self.before


def _array() -> np.ndarray:
    return np.arange(ARRAY_MIB * MiB // 8, dtype=np.float64)  # written: its pages are resident


def _identity(block: Any) -> Any:
    return block


def round_trip_peaks(parallelizer: Any = None) -> list[dict[str, int]]:
    """Every process: scatter then gather twice; each one's peak extra memory per call."""
    par = parallelizer
    data = _array() if par.on_main else None
    peaks = {}
    for call in ("first", "second"):
        with Peak() as peak:
            result = par.gather(par.scatter(data))
        peaks[call] = peak.extra
        del result
    return par.allgather(peaks)


def _child_mp() -> dict[str, Any]:
    from parallelizer import MultiprocessingParallelizer

    this = __import__(MODULE, fromlist=["round_trip_peaks"])
    with MultiprocessingParallelizer(nprocs=NPROCS) as par:
        par.run(lambda parallelizer: None)  # workers started
        peaks = par.run(this.round_trip_peaks)
    return {"ours (multiprocessing)": peaks}


def _child_pool() -> dict[str, Any]:
    data = _array()
    with multiprocessing.Pool(NPROCS) as pool:
        pool.map(_identity, range(NPROCS))
        with Peak() as peak:
            result = np.concatenate(pool.map(_identity, np.array_split(data, NPROCS)))
        del result
    return {"Pool.map (array_split)": [{"first": peak.extra}]}


def _child_mpi() -> dict[str, Any] | None:
    from mpi4py import MPI

    from parallelizer import MPIParallelizer

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    par = MPIParallelizer()
    results = {"ours (MPI)": round_trip_peaks(par)}
    data = _array() if rank == 0 else None
    counts = [len(block) for block in np.array_split(np.empty(ARRAY_MIB * MiB // 8), size)]
    displs = [sum(counts[:i]) for i in range(size)]
    with Peak() as peak:
        mine = np.empty(counts[rank]) if rank else None
        comm.Scatterv([data, counts, displs, MPI.DOUBLE] if rank == 0 else None, mine if rank else MPI.IN_PLACE, 0)
        mine = data[: counts[0]] if rank == 0 else mine
        out = np.empty(ARRAY_MIB * MiB // 8) if rank == 0 else None
        comm.Gatherv(mine, [out, counts, displs, MPI.DOUBLE] if rank == 0 else None, 0)
    results["mpi4py Scatterv/Gatherv (fresh)"] = comm.allgather({"first": peak.extra})
    del out, mine
    with Peak() as peak:
        mine = comm.scatter(np.array_split(data, size) if rank == 0 else None, 0)
        parts = comm.gather(mine, 0)
        out = np.concatenate(parts) if rank == 0 else None
    results["mpi4py scatter/gather (pickle)"] = comm.allgather({"first": peak.extra})
    del out, parts, mine
    return results if rank == 0 else None


def run_child(args: argparse.Namespace) -> None:
    """One fresh process (or MPI job): measures and writes its part."""
    kind, _, part = args.child.partition(":")
    results = {"mp": _child_mp, "pool": _child_pool, "mpi": _child_mpi}[kind]()
    if results is not None:
        write_json(Path(part), results)


def run(args: argparse.Namespace) -> Report:
    """Measures every system in a fresh process and reports main's peaks."""
    report = Report("memory", f"peak memory of scatter + gather of {ARRAY_MIB} MiB on main", args)
    nbytes = ARRAY_MIB * MiB
    report.add(OP, IDEAL, [nbytes], size=nbytes, unit="B")
    mpiexec = find_mpiexec(args.mpiexec)
    for kind in ("mp", "pool", "mpi"):
        part = Path(args.results) / f"memory.{kind}.tmp"
        part.unlink(missing_ok=True)
        child = [*forward_args(args), "--child", f"{kind}:{part}"]
        command = mpi_command(mpiexec, NPROCS, MODULE, *child) if kind == "mpi" else python_module(MODULE, *child)
        try:
            launch(command, min(args.timeout, 300))
        except RuntimeError as exc:
            print(f"memory: {kind} failed: {exc}", flush=True)
            continue
        for system, per_rank in read_json(part).items():
            for call in ("first", "second"):
                if call not in per_rank[0]:
                    continue
                name = system if call == "first" else f"{system}, second call"
                others = [peaks[call] for peaks in per_rank[1:]]
                note = f"other process: {max(others) / nbytes:.2f}x the array" if others else ""
                report.add(OP, name, [per_rank[0][call]], size=nbytes, unit="B", note=note)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return report.finish(compare)


def compare(report: Report) -> None:
    """Our peaks against the least possible (with the target) and against the peers'."""
    ideal = report.find(OP, IDEAL)
    ours = [t for t in report.timings if t.system.startswith("ours")]
    peers = [t for t in report.timings if not t.system.startswith("ours") and t.system != IDEAL]
    for timing in ours:
        target = TARGET if not timing.system.endswith("second call") else None
        report.compare(SECTION, OP, timing, ideal, kind="cost", target=target, note=timing.note)
    for timing in ours:
        if timing.system.endswith("second call"):
            continue
        for peer in peers:
            if ("MPI" in timing.system) == ("mpi4py" in peer.system):
                report.compare(SECTION, OP, timing, peer, kind="cost", note=peer.note)


def main() -> None:
    """Runs the benchmark, or is one fresh process of it."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
