"""The package as users import it."""

from __future__ import annotations

import subprocess
import sys

import parallelizer


def test_public_names():
    for name in (
        "Parallelizer",
        "SerialNonParallelizer",
        "RemoteError",
        "WorkerTerminatedError",
        "ParallelizerError",
    ):
        assert hasattr(parallelizer, name), name
        assert name in parallelizer.__all__
    assert isinstance(parallelizer.__version__, str)


def test_import_loads_neither_mpi4py_nor_numpy():
    code = (
        "import sys, parallelizer; "
        "print(*(name in sys.modules for name in ('mpi4py', 'numpy', 'parallelizer._mp', 'parallelizer._mpi')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["False", "False", "False", "False"]  # backends load when first used


def test_lazy_backends_are_the_real_classes():
    from parallelizer.mp import MultiprocessingParallelizer
    from parallelizer.mpi import MPIParallelizer
    from parallelizer.runner import ClientServerRunner

    assert parallelizer.MultiprocessingParallelizer is MultiprocessingParallelizer
    assert parallelizer.MPIParallelizer is MPIParallelizer
    assert parallelizer.ClientServerRunner is ClientServerRunner
    assert {"MultiprocessingParallelizer", "MPIParallelizer", "ClientServerRunner"} <= set(dir(parallelizer))
