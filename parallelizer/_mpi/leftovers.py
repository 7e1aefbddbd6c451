"""Files an MPI job leaves behind when it ends through ``MPI_Abort``, found and removed.

MPICH keeps its shared-memory segment in ``/dev/shm/mpich_shm_*`` (about
3 MB per node and job): one rank creates it in ``MPI_Init``, every rank of
the node maps it, and only ``MPI_Finalize`` removes it. A job ended with
``MPI_Abort`` never finalizes, so each failing job would leave one behind,
and a day of failing test jobs fills memory. Its name is not in the
environment, but every rank of the job has it mapped: :func:`remove` unlinks
exactly the segments listed in this process's ``/proc/self/maps`` (never
another job's), and the ``hydra_hwloc_xmlfile_*`` file that MPICH's launcher
(its ``hydra_pmi_proxy``, this rank's parent) holds for this job. Unlinking
is safe while the job runs: mapped memory stays until the last process
unmaps it.

Open MPI and Intel MPI leave nothing after an abort under their ``mpiexec``.
Open MPI 5 started without a launcher (a singleton, ``python script.py``)
leaves its ``/dev/shm/sm_segment.*`` (16 MiB) behind after every run, even a
clean one: :func:`remove_singleton_segment` unlinks it right after
``MPI_Init``, where no other process can need it.
"""

from __future__ import annotations

import contextlib
import os

SHM_DIR = "/dev/shm/"
SEGMENT_PREFIXES = ("mpich_shm_", "mpich_vci_")
OPEN_MPI_SEGMENT_PREFIX = "sm_segment."
LAUNCHER = "hydra_pmi_proxy"
LAUNCHER_FILE_PREFIX = "hydra_hwloc_xmlfile_"


def mapped_segments(maps: str = "/proc/self/maps", prefixes: tuple[str, ...] = SEGMENT_PREFIXES) -> list[str]:
    """The shared-memory files this process has mapped (MPICH's, or those named ``prefixes``)."""
    found: list[str] = []
    try:
        with open(maps, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.rstrip("\n").split(None, 5)
                path = fields[5] if len(fields) == 6 else ""
                name = path[len(SHM_DIR) :] if path.startswith(SHM_DIR) else ""
                if name.startswith(prefixes) and "/" not in name and path not in found:
                    found.append(path)
    except OSError:
        return []
    return found


def launcher_files() -> list[str]:
    """The temporary files this rank's MPICH launcher (its parent process) holds open for the job."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/comm", encoding="utf-8") as comm:
            if comm.read().strip() != LAUNCHER:
                return []
        fds = os.listdir(f"/proc/{parent}/fd")
    except OSError:
        return []
    found = []
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{parent}/fd/{fd}")
            if os.path.basename(target).startswith(LAUNCHER_FILE_PREFIX) and not target.endswith(" (deleted)"):
                found.append(target)
    return found


def remove() -> list[str]:
    """Unlinks this job's leftovers (see the module docstring); returns what it removed."""
    return _unlink(mapped_segments() + launcher_files())


def remove_singleton_segment() -> list[str]:
    """Unlinks the shared-memory file of an Open MPI singleton (see the module docstring).

    Call it only in a process that initialized MPI without a launcher; returns
    what it removed.
    """
    return _unlink(mapped_segments(prefixes=(OPEN_MPI_SEGMENT_PREFIX,)))


def _unlink(paths: list[str]) -> list[str]:
    """Unlinks each of ``paths`` that still exists; returns those it removed."""
    removed = []
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed.append(path)
    return removed
