"""MPI in this process: importing mpi4py, checking the launch, finding mpiexec.

mpi4py is imported here and only here, and only when an MPI backend is
actually used, so ``import parallelizer`` works where MPI is absent or broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Any

from .._core import env
from .._core.limits import LAUNCHER_QUERY
from ..errors import LaunchMismatchError

INSTALL_HINT = "pip install 'parallelizer[mpi]'  (mpi4py plus the mpich wheel, which brings mpiexec)"


_MPI: Any = None


def load() -> Any:
    """The ``mpi4py.MPI`` module (imported, and MPI initialized, on the first call).

    Raises:
        ImportError: mpi4py (or the MPI library it needs) is missing; says
            how to install it.
    """
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(f"MPIParallelizer needs mpi4py and an MPI library: {INSTALL_HINT} ({exc})") from exc
        _MPI = MPI
    return _MPI


def initialized() -> bool:
    """True if this process has initialized MPI (and not finalized it)."""
    module = sys.modules.get("mpi4py.MPI")
    if module is None:
        return False
    try:
        return bool(module.Is_initialized()) and not module.Is_finalized()
    except Exception:
        return False


def library_version() -> str:
    """The first line of the MPI library's version string."""
    return str(load().Get_library_version()).strip().splitlines()[0]


def find_mpiexec() -> str | None:
    """The ``mpiexec`` that belongs to the installed MPI.

    The one installed next to this Python (the ``mpich`` wheel puts it in the
    environment's ``bin``) comes first, then ``mpiexec`` and ``mpirun`` on
    ``PATH``.
    """
    for directory in (sysconfig.get_path("scripts"), os.path.join(sys.prefix, "bin")):
        for name in ("mpiexec", "mpirun"):
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    return None


def mpiexec_flavor(mpiexec: str) -> str:
    """``"openmpi"``, ``"mpich"`` or ``"unknown"``, from ``mpiexec --version``."""
    try:
        text = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=LAUNCHER_QUERY).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lowered = text.lower()
    if "open mpi" in lowered or "openrte" in lowered or "prte" in lowered:
        return "openmpi"
    if "hydra" in lowered or "mpich" in lowered or "intel" in lowered:
        return "mpich"
    return "unknown"


def check_launch(world_size: int) -> None:
    """Raises :class:`LaunchMismatchError` when the launcher and MPI disagree.

    Args:
        world_size: ``MPI.COMM_WORLD.Get_size()`` in this process.
    """
    launcher = env.launcher_world_size()
    if launcher is None or launcher[0] <= 1 or world_size != 1:
        return
    count, variable = launcher
    mpiexec = find_mpiexec() or "mpiexec"
    raise LaunchMismatchError(
        f"the launcher started {count} processes ({variable}={count}), but MPI in this process reports a "
        f"world of 1: the mpiexec that started it does not belong to the MPI library mpi4py uses "
        f"({library_version()}). Launch with the matching one: '{mpiexec} -n {count} python script.py', "
        f"or let parallelizer find it: 'python -m parallelizer -n {count} script.py'. "
        f"'python -m parallelizer info' shows both."
    )
