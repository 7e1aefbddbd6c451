"""Every environment variable parallelizer reads, read here and nowhere else.

Ours share the ``PARALLELIZER`` prefix:

``PARALLELIZER``
    The backend ``Parallelizer.lookup(None)`` builds when no ``with`` block is
    active: a registered name, optionally with a process count
    (``multiprocessing:4``; ``serial`` and ``mpi`` take none).
``PARALLELIZER_DEBUG``
    ``1``/``true``/``yes``/``on`` turns on collective-mismatch detection.
``PARALLELIZER_START_METHOD``
    Default start method of the multiprocessing backend.
``PARALLELIZER_TIMEOUT``
    The longest a process waits in one call, in seconds (default: no limit).

The others belong to MPI launchers and tell whether this process was started
by ``mpiexec``/``srun``, by which one, and with how many ranks
(:func:`launcher_world_size`, :func:`launcher_variables`), or to mpi4py
(``MPI4PY_RC_*``, :func:`mpi4py_rc_in_environment`). :func:`usable_cpus` reads
the process's CPU affinity, the other fact about where we run.
"""

from __future__ import annotations

import os

BACKEND_VAR = "PARALLELIZER"
DEBUG_VAR = "PARALLELIZER_DEBUG"
START_METHOD_VAR = "PARALLELIZER_START_METHOD"
TIMEOUT_VAR = "PARALLELIZER_TIMEOUT"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

# (variable holding the world size, variable that must also be set or None).
# Hydra (MPICH, Intel MPI, MVAPICH) sets PMI_SIZE; Open MPI sets
# OMPI_COMM_WORLD_SIZE; MVAPICH2 also sets MV2_COMM_WORLD_SIZE. Slurm's srun
# sets SLURM_NTASKS for every step, but so does the batch shell, so it only
# counts together with a PMI rank variable that srun sets for each task.
_LAUNCHER_SIZE_VARS: tuple[tuple[str, str | None], ...] = (
    ("PMI_SIZE", None),
    ("OMPI_COMM_WORLD_SIZE", None),
    ("MV2_COMM_WORLD_SIZE", None),
    ("PMIX_SIZE", None),
    ("SLURM_NTASKS", "PMI_RANK"),
    ("SLURM_NTASKS", "PMIX_RANK"),
)


# What launchers put in their processes' environment (see parallelizer._mpi.launcher).
_LAUNCHER_PREFIXES = ("OMPI_COMM_WORLD_", "PMIX_", "PMI_", "HYDI_", "I_MPI_HYDRA_UUID", "SLURM_")


def backend_spec() -> str | None:
    """The value of ``PARALLELIZER``, stripped; ``None`` when unset or empty."""
    value = os.environ.get(BACKEND_VAR, "").strip()
    return value or None


def debug_enabled() -> bool:
    """Whether ``PARALLELIZER_DEBUG`` asks for collective-mismatch detection.

    Raises:
        ValueError: The variable holds something other than a yes/no word.
    """
    value = os.environ.get(DEBUG_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{DEBUG_VAR} must be one of 1/0, true/false, yes/no, on/off; got {value!r}")


def timeout() -> float | None:
    """The value of ``PARALLELIZER_TIMEOUT`` in seconds, or ``None`` when unset or empty.

    Raises:
        ValueError: The variable is not a positive number.
    """
    value = os.environ.get(TIMEOUT_VAR, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(f"{TIMEOUT_VAR} must be a positive number of seconds, got {value!r}")
    return seconds


def start_method() -> str | None:
    """The value of ``PARALLELIZER_START_METHOD``, or ``None`` when unset."""
    value = os.environ.get(START_METHOD_VAR, "").strip()
    return value or None


def usable_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def launcher_world_size() -> tuple[int, str] | None:
    """The world size an MPI launcher announced, with the variable that said so.

    Returns:
        ``(size, variable_name)``, or ``None`` when no launcher variable is set.
    """
    for size_var, companion in _LAUNCHER_SIZE_VARS:
        raw = os.environ.get(size_var)
        if raw is None or (companion is not None and companion not in os.environ):
            continue
        try:
            return int(raw.strip()), size_var
        except ValueError:
            continue
    return None


def launcher_variables() -> dict[str, str]:
    """The variables MPI launchers set (``OMPI_COMM_WORLD_*``, ``PMIX_*``, ``PMI_*``, ``HYDI_*``, ``SLURM_*``...).

    Also Intel MPI's ``I_MPI_HYDRA_UUID``.

    Which launcher started this process is told by these alone; see
    :func:`parallelizer._mpi.launcher.detect`.
    """
    return {name: value for name, value in os.environ.items() if name.startswith(_LAUNCHER_PREFIXES)}


def mpi4py_rc_in_environment() -> bool:
    """Whether ``MPI4PY_RC_INITIALIZE`` or ``MPI4PY_RC_FINALIZE`` is set (they override ``mpi4py.rc``)."""
    return "MPI4PY_RC_INITIALIZE" in os.environ or "MPI4PY_RC_FINALIZE" in os.environ
