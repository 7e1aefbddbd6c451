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
