"""Builds the parallelizer a test backend name stands for."""

from __future__ import annotations

from parallelizer import Parallelizer, SerialNonParallelizer


def make_parallelizer(name: str) -> Parallelizer:
    """``serial`` -> serial; ``mp<N>`` -> multiprocessing with N processes;
    ``mpi`` -> MPI over COMM_WORLD."""
    if name == "serial":
        return SerialNonParallelizer()
    if name.startswith("mp") and name[2:].isdigit():
        from parallelizer import MultiprocessingParallelizer

        return MultiprocessingParallelizer(nprocs=int(name[2:]))
    if name == "mpi":
        from parallelizer import MPIParallelizer

        return MPIParallelizer()
    raise ValueError(f"unknown test backend {name!r}")
