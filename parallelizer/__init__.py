"""parallelizer: the same SPMD code serially, on local processes, or under MPI.

Functions take ``parallelizer=None`` and call ``Parallelizer.lookup`` on it,
so they run serially by default, in parallel under ``mpiexec``, and with
whatever parallelizer a caller passes. See ``README.md`` for a tour.

Example:
    >>> from parallelizer import MultiprocessingParallelizer, Parallelizer
    >>> def mean_square(values, parallelizer=None):
    ...     par = Parallelizer.lookup(parallelizer)
    ...     block = par.scatter(values if par.on_main else None)  # this process's share
    ...     return par.allreduce(sum(v * v for v in block)) / len(values)
    >>> mean_square([1, 2, 3, 4])  # serial
    7.5
    >>> MultiprocessingParallelizer(nprocs=2).run(mean_square, [1, 2, 3, 4])
    7.5
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .base import Parallelizer
from .errors import (
    CollectiveMismatchError,
    CombineError,
    DeadlockError,
    LaunchMismatchError,
    OversubscriptionWarning,
    ParallelizerError,
    RemoteError,
    RemoteSerializationError,
    SerializationError,
    WorkerTerminatedError,
)
from .serial import SerialNonParallelizer

if TYPE_CHECKING:
    from .mp import MultiprocessingParallelizer
    from .mpi import MPIParallelizer
    from .runner import ClientServerRunner

# Imported on first use, so that `import parallelizer` stays quick and loads
# none of the process or MPI machinery a serial notebook never needs.
_LAZY = {"MultiprocessingParallelizer": "mp", "MPIParallelizer": "mpi", "ClientServerRunner": "runner"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'parallelizer' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    "RemoteSerializationError",
    "DeadlockError",
    "CollectiveMismatchError",
    "CombineError",
    "LaunchMismatchError",
    "OversubscriptionWarning",
]
