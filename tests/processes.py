"""Looking at processes from the tests (Linux /proc), and the mpiexec the tests launch."""

from __future__ import annotations

import os
import time


def require_mpiexec() -> str:
    """The mpiexec of the installed MPI; fails the module (a broken environment) when there is none."""
    import pytest

    from parallelizer._mpi import runtime

    mpiexec = runtime.find_mpiexec()
    if mpiexec is None:  # the test extra installs mpich, so this means a broken environment
        pytest.fail("no mpiexec found: install the test extras (pip install -e '.[mpi,test]')", pytrace=False)
    return mpiexec


def mpiexec_command(nprocs: int, mpiexec: str | None = None) -> list[str]:
    """``[mpiexec, flags..., "-n", nprocs]`` for the installed MPI (or ``mpiexec``).

    The flags are the ones ``python -m parallelizer -n`` adds for that MPI's
    launcher (Open MPI's ``--allow-run-as-root`` as root and
    ``--oversubscribe``), so a test runs the same under every MPI library.
    """
    from parallelizer import cli

    mpiexec = mpiexec or require_mpiexec()
    return [mpiexec, *cli.launcher_flags(mpiexec, nprocs), "-n", str(nprocs)]


# Variables a test's own launcher (mpiexec/srun running pytest) or shell would pass on to
# the processes a test starts, changing what they detect: see parallelizer._core.env.
LAUNCHER_PREFIXES = (
    "OMPI_",
    "PMIX_",
    "PMI_",
    "HYDI_",
    "HYDRA_",
    "MV2_",
    "SLURM_",
    "MPI_LOCAL",
    "MPI4PY_RC_",
    "PRTE_",
    "I_MPI_",
)


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: ``os.environ`` without our settings or launchers' variables.

    Our settings (``PARALLELIZER``, ``PARALLELIZER_TIMEOUT``, ...) in a
    developer's shell would change what a started script picks or how it waits.

    Plus ``OPENBLAS_NUM_THREADS=1``: the tests start well over a thousand
    Python processes (each MPI job several) on few cores, and in each one that
    imports numpy OpenBLAS starts a thread per core that spins for a while, a
    seventh of the CPU time of the MPI fault matrix, for nothing. No such
    process depends on BLAS threads. ``extra`` is added last.
    """
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(("PARALLELIZER", *LAUNCHER_PREFIXES))
    }
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """True while process ``pid`` runs; a zombie waiting to be reaped counts as gone.

    A killed process with several threads shows its main thread as a zombie
    before the others have exited (and before its parent can reap it), so it
    counts as gone only once no other thread is left.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().split(")")[-1].split()[0] not in ("Z", "X"):
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    """Waits until none of ``pids`` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def shm_files() -> set[str]:
    """The names in ``/dev/shm`` now (empty where there is none)."""
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


JOBLIB_PREFIXES = ("joblib_memmapping_folder_", "sem.loky-")
"""What joblib and loky put in ``/dev/shm`` while a joblib test runs alongside (never this backend)."""


def mpi_segment_prefixes() -> tuple[str, ...]:
    """The names MPI libraries give their ``/dev/shm`` segments (a job of another test may be starting)."""
    from parallelizer._mpi import leftovers

    return (*leftovers.SEGMENT_PREFIXES, leftovers.OPEN_MPI_SEGMENT_PREFIX)


def other_libraries_prefixes() -> tuple[str, ...]:
    """Names in ``/dev/shm`` that tests of other libraries running alongside make: MPI's and joblib's."""
    return (*mpi_segment_prefixes(), *JOBLIB_PREFIXES)


def _mapped_anywhere(names: set[str]) -> set[str]:
    """Those of ``names`` (files in ``/dev/shm``) that some process has mapped."""
    from parallelizer._mpi.leftovers import mapped_segments  # the package's one reader of /proc/*/maps

    mapped: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        mapped.update(os.path.basename(path) for path in mapped_segments(f"/proc/{pid}/maps", prefixes=("",)))
    return names & mapped


def shm_left_behind(
    before: set[str], prefixes: tuple[str, ...] = ("",), grace: float = 2.0, ignore: tuple[str, ...] = ()
) -> set[str]:
    """Shared-memory files created since ``before`` that nobody maps and nobody removes.

    Other tests may run at the same time (``pytest -n``) and start jobs of
    their own: their files are mapped while those jobs run, and removed when
    they end (so a file is only counted if it is still there after ``grace``).
    Names starting with one of ``ignore`` are never counted.
    """
    deadline = time.monotonic() + grace
    while True:
        new = {name for name in shm_files() - before if name.startswith(prefixes) and not name.startswith(ignore)}
        left = new - _mapped_anywhere(new)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
