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
    code = "import sys, parallelizer; print('mpi4py' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["False", "False"]
