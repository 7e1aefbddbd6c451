"""parallelizer: the same SPMD code serially, on local processes, or under MPI.

Functions take ``parallelizer=None`` and call ``Parallelizer.lookup`` on it,
so they run serially by default, in parallel under ``mpiexec``, and with
whatever parallelizer a caller passes. See ``README.md`` for a tour.
"""

from ._version import __version__
from .base import Parallelizer
from .errors import (
    CollectiveMismatchError,
    DeadlockError,
    ParallelizerError,
    RemoteError,
    SerializationError,
    WorkerTerminatedError,
)
from .mp import MultiprocessingParallelizer
from .mpi import MPIParallelizer
from .runner import ClientServerRunner
from .serial import SerialNonParallelizer

__all__ = [
    "__version__",
    "Parallelizer",
    "SerialNonParallelizer",
    "MultiprocessingParallelizer",
    "MPIParallelizer",
    "ClientServerRunner",
    "ParallelizerError",
    "RemoteError",
    "WorkerTerminatedError",
    "SerializationError",
    "DeadlockError",
    "CollectiveMismatchError",
]
