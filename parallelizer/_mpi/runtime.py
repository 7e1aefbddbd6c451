"""MPI in this process: importing mpi4py, checking the launch, finding mpiexec.

mpi4py is imported here and only here, and only when an MPI backend is
actually used, so ``import parallelizer`` works where MPI is absent or broken.
MPI is initialized only after the launcher has been checked
(:func:`preflight`): started by another MPI's ``mpiexec``, the library would
die inside ``MPI_Init`` or run alone, before any message of ours. Asking
which library it is (``python -m parallelizer info``) never initializes MPI.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Any

from .._core import env
from .._core.limits import LAUNCHER_QUERY
from ..errors import LaunchMismatchError
from . import launcher, leftovers

INSTALL_HINT = "pip install 'parallelizer[mpi]'  (mpi4py plus the mpich wheel, which brings mpiexec)"


# mpi4py.rc.thread_level -> the MPI constant that MPI_Init_thread is asked for
_THREAD_LEVELS = {
    "single": "THREAD_SINGLE",
    "funneled": "THREAD_FUNNELED",
    "serialized": "THREAD_SERIALIZED",
    "multiple": "THREAD_MULTIPLE",
}
_MPI: Any = None  # the mpi4py.MPI module, once imported
_owe_init = False  # imported by us with MPI_Init held back: load() still has to initialize


def _import() -> Any:
    """``mpi4py.MPI``, imported without initializing MPI where the choice is ours.

    mpi4py initializes MPI when ``mpi4py.MPI`` is imported (``mpi4py.rc.initialize``).
    When nobody has imported it yet and neither ``mpi4py.rc`` nor the
    ``MPI4PY_RC_*`` variables say otherwise, it is imported with the
    initialization held back, so the library can be asked which it is
    (``MPI_Get_library_version`` may be called before ``MPI_Init``) and
    the launcher checked first; :func:`load` then initializes it as mpi4py
    would have (same thread level, finalized at exit).
    """
    global _MPI, _owe_init
    if _MPI is not None:
        return _MPI
    try:
        import mpi4py
    except ImportError as exc:
        raise ImportError(f"MPIParallelizer needs mpi4py and an MPI library: {INSTALL_HINT} ({exc})") from exc
    rc = mpi4py.rc
    hold = "mpi4py.MPI" not in sys.modules and rc.initialize in (True, "yes") and not env.mpi4py_rc_in_environment()
    saved = (rc.initialize, rc.finalize)
    if hold:
        rc.initialize = False
        rc.finalize = True if rc.finalize is None else rc.finalize  # what mpi4py would have done
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"MPIParallelizer needs mpi4py and an MPI library: {INSTALL_HINT} ({exc})") from exc
    finally:
        rc.initialize, rc.finalize = saved
    _MPI, _owe_init = MPI, hold
    return MPI


def load() -> Any:
    """The ``mpi4py.MPI`` module, with MPI initialized (on the first call).

    Before initializing, checks that the launcher that started this process
    (if any) belongs to the MPI library mpi4py uses (:func:`preflight`).

    Raises:
        ImportError: mpi4py (or the MPI library it needs) is missing; says
            how to install it.
        LaunchMismatchError: This process was started by another MPI's launcher.
    """
    global _owe_init
    if not _owe_init and _MPI is not None:  # every call after the first (collectives call this on their way)
        return _MPI
    MPI = _import()
    if _owe_init:
        preflight()
        if not MPI.Is_initialized():
            import mpi4py

            if mpi4py.rc.threads in (False, "no"):
                MPI.Init()
            else:
                MPI.Init_thread(getattr(MPI, _THREAD_LEVELS.get(str(mpi4py.rc.thread_level), "THREAD_MULTIPLE")))
            if launcher.detect(env.launcher_variables()) is None and library_family() == "openmpi":
                leftovers.remove_singleton_segment()
        _owe_init = False
    return MPI


def initialized() -> bool:
    """True if this process has initialized MPI (and not finalized it)."""
    module = sys.modules.get("mpi4py.MPI")
    if module is None:
        return False
    try:
        return bool(module.Is_initialized()) and not module.Is_finalized()
    except Exception:
        return False


def full_library_version() -> str:
    """``MPI.Get_library_version()``, without initializing MPI."""
    return str(_import().Get_library_version()).strip()


def library_version() -> str:
    """The MPI library's name and version (e.g. ``MPICH 5.0.2``), without initializing MPI."""
    return launcher.short_version(full_library_version())


def library_family() -> str | None:
    """``"mpich"``, ``"openmpi"`` or ``"unknown"`` for mpi4py's MPI library; ``None`` without mpi4py."""
    try:
        return launcher.library_family(full_library_version())
    except ImportError:
        return None


def preflight() -> None:
    """Raises :class:`LaunchMismatchError` when another MPI's launcher started this process.

    Called before MPI is initialized, from the environment alone (see
    :mod:`parallelizer._mpi.launcher`); does nothing outside a launcher or
    when the combination is not certainly wrong.
    """
    message = launch_problem()
    if message is not None:
        raise LaunchMismatchError(message)


def launch_problem() -> str | None:
    """What :func:`preflight` would raise, or ``None``; never initializes MPI."""
    started_by = launcher.detect(env.launcher_variables())
    if started_by is None:
        return None
    version = full_library_version()
    if launcher.compatible(started_by, version) is not False:
        return None
    return launcher.mismatch_message(started_by, version, find_mpiexec(launcher.library_family(version)))


def find_mpiexec(family: str | None = None) -> str | None:
    """The ``mpiexec`` that belongs to the installed MPI.

    The one installed next to this Python (the ``mpich`` wheel puts it in the
    environment's ``bin``) comes first, then ``mpiexec`` and ``mpirun`` on
    ``PATH``.

    Args:
        family: ``"mpich"`` or ``"openmpi"``: the first candidate of that
            family (``mpiexec --version`` tells), also looking for
            ``mpiexec.mpich``/``mpiexec.hydra``/``mpiexec.openmpi`` on
            ``PATH``; ``None`` when none is. ``None`` or ``"unknown"``: the
            first candidate.
    """
    candidates = []
    for directory in (sysconfig.get_path("scripts"), os.path.join(sys.prefix, "bin")):
        for name in ("mpiexec", "mpirun"):
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                candidates.append(candidate)
    names = ["mpiexec", "mpirun"]
    if family not in (None, "unknown"):
        names += [f"mpiexec.{family}", "mpiexec.hydra"]
    for name in names:
        found = shutil.which(name)
        if found:
            candidates.append(found)
    if family in (None, "unknown"):
        return candidates[0] if candidates else None
    return next((candidate for candidate in candidates if mpiexec_flavor(candidate) == family), None)


@functools.cache
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


def path_problem() -> str | None:
    """A warning when the ``mpiexec`` first on ``PATH`` belongs to another MPI than mpi4py's; else ``None``.

    Never initializes MPI.
    """
    first = shutil.which("mpiexec")
    family = library_family()
    if first is None or family in (None, "unknown"):
        return None
    flavor = mpiexec_flavor(first)
    if flavor in (family, "unknown"):
        return None
    matching = find_mpiexec(family)
    instead = f"Use {matching}" if matching else f"Install the mpiexec of {launcher.LIBRARY_NAMES[family]}"
    return (
        f"the mpiexec first on PATH ({first}) belongs to {launcher.LIBRARY_NAMES.get(flavor, flavor)}, "
        f"but mpi4py uses {library_version()}: 'mpiexec -n N python script.py' would not start a working job. "
        f"{instead}, or 'python -m parallelizer -n N script.py', which finds it."
    )


def check_launch(world_size: int) -> None:
    """Raises :class:`LaunchMismatchError` when the launcher and MPI disagree.

    Args:
        world_size: ``MPI.COMM_WORLD.Get_size()`` in this process.
    """
    announced = env.launcher_world_size()
    if announced is None or announced[0] <= 1 or world_size != 1:
        return
    count, variable = announced
    mpiexec = find_mpiexec(library_family()) or find_mpiexec() or "mpiexec"
    raise LaunchMismatchError(
        f"the launcher started {count} processes ({variable}={count}), but MPI in this process reports a "
        f"world of 1: the mpiexec that started it does not belong to the MPI library mpi4py uses "
        f"({library_version()}). Launch with the matching one: '{mpiexec} -n {count} python script.py', "
        f"or let parallelizer find it: 'python -m parallelizer -n {count} script.py'. "
        f"'python -m parallelizer info' shows both."
    )
