"""Which launcher started this process, and whether mpi4py's MPI library can join it.

Decided from the environment before MPI is initialized, because a library
started by another MPI's launcher fails inside ``MPI_Init`` itself: MPICH
under Open MPI's ``mpiexec`` aborts ("Runtime environment uses unsupported
PMI version PMIx", exit 16), Open MPI under MPICH's ``mpiexec`` starts every
process alone, in a world of one. Launchers announce themselves in their
processes' environment and speak one wire protocol to them::

    launcher                variables its processes get                      protocol
    Open MPI's mpiexec      OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMIX_NAMESPACE   PMIx
    srun --mpi=pmix         PMIX_RANK, PMIX_NAMESPACE, SLURM_PROCID           PMIx
    MPICH's hydra mpiexec PMI_RANK, PMI_SIZE, PMI_FD, HYDI_CONTROL_FD       PMI-1
    srun --mpi=pmi2         PMI_RANK, PMI_SIZE, PMI_FD, SLURM_PROCID          PMI-2

MPICH (and Intel MPI, MVAPICH) speaks PMI-1 and PMI-2, and PMIx only when
built with it (its version string's ``MPICH configure:`` line says
``--with-pmix``; the ``mpich`` wheel is not). Open MPI speaks PMIx (Open MPI 4
also PMI-2 under Slurm, when built with Slurm's library; Open MPI 5 never).
Only what is certain counts as a mismatch; anything else is left to MPI and
to the check after initialization (:func:`parallelizer._mpi.runtime.check_launch`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

LIBRARY_NAMES = {"openmpi": "Open MPI", "mpich": "MPICH"}
"""Display names of the library families :func:`library_family` returns."""


@dataclass(frozen=True)
class Launcher:
    """A launcher, recognized from the environment of the processes it started.

    Attributes:
        protocol: ``"pmix"`` or ``"pmi"`` (PMI-1/PMI-2): how processes talk to it.
        name: What it is, for messages (``"Open MPI's mpiexec"``).
        evidence: The variable that tells, with its value (``"OMPI_COMM_WORLD_SIZE=2"``).
        size: The number of processes it started, when it says.
        slurm: Started by Slurm's ``srun``.
    """

    protocol: str
    name: str
    evidence: str
    size: int | None
    slurm: bool


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def detect(environ: Mapping[str, str]) -> Launcher | None:
    """The launcher that started a process with this environment, or ``None``.

    Args:
        environ: The process's environment (at least the launchers' variables).

    Example:
        >>> detect({"OMPI_COMM_WORLD_SIZE": "2", "PMIX_RANK": "0"}).name
        "Open MPI's mpiexec"
        >>> launcher = detect({"PMI_RANK": "0", "PMI_SIZE": "8", "PMI_FD": "5", "SLURM_PROCID": "0"})
        >>> launcher.name, launcher.protocol, launcher.size
        ('srun --mpi=pmi2', 'pmi', 8)
        >>> detect({"PMI_RANK": "0", "PMI_SIZE": "2", "PMI_FD": "5", "I_MPI_HYDRA_UUID": "bc79-..."}).name
        "Intel MPI's hydra mpiexec"
        >>> detect({"PMI_SIZE": "4"}) is None  # no connection to a launcher: MPI starts alone
        True
    """
    slurm = "SLURM_PROCID" in environ
    slurm_size = _int(environ.get("SLURM_NTASKS"))
    if "OMPI_COMM_WORLD_SIZE" in environ:
        announced = environ["OMPI_COMM_WORLD_SIZE"]
        return Launcher("pmix", "Open MPI's mpiexec", f"OMPI_COMM_WORLD_SIZE={announced}", _int(announced), False)
    if "PMIX_RANK" in environ:
        name = "srun --mpi=pmix" if slurm else "a PMIx launcher"
        pmix_size = _int(environ.get("PMIX_SIZE")) or (slurm_size if slurm else None)
        return Launcher("pmix", name, f"PMIX_RANK={environ['PMIX_RANK']}", pmix_size, slurm)
    if "PMI_RANK" in environ and ("PMI_FD" in environ or "PMI_PORT" in environ):
        intel = "I_MPI_HYDRA_UUID" in environ  # Intel MPI's hydra: no HYDI_CONTROL_FD
        hydra = intel or "HYDI_CONTROL_FD" in environ
        slurm = slurm and not hydra  # mpiexec inside a batch job inherits SLURM_PROCID
        if intel:
            name = "Intel MPI's hydra mpiexec"
        elif hydra:
            name = "MPICH's hydra mpiexec"
        elif slurm:
            name = "srun --mpi=pmi2"
        else:
            name = "a PMI launcher (an MPICH-family mpiexec)"
        pmi_size = _int(environ.get("PMI_SIZE"))
        evidence = f"PMI_SIZE={pmi_size}" if pmi_size is not None else f"PMI_RANK={environ['PMI_RANK']}"
        return Launcher("pmi", name, evidence, pmi_size, slurm)
    return None


def library_family(version: str) -> str:
    """``"mpich"``, ``"openmpi"`` or ``"unknown"``, from ``MPI.Get_library_version()``.

    Example:
        >>> library_family("MPICH Version:      5.0.2"), library_family("Open MPI v5.0.11, package: ...")
        ('mpich', 'openmpi')
        >>> library_family("Intel(R) MPI Library 2021.12"), library_family("Something MPI 1.0")
        ('mpich', 'unknown')
    """
    if "Open MPI" in version:
        return "openmpi"
    if any(name in version for name in ("MPICH", "Intel(R) MPI", "MVAPICH")):
        return "mpich"
    return "unknown"


def short_version(version: str) -> str:
    r"""The library's name and version, from its long version string.

    Example:
        >>> short_version("MPICH Version:      5.0.2\nMPICH Release date: ...")
        'MPICH 5.0.2'
        >>> short_version("Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ...")
        'Open MPI v5.0.11'
    """
    first = " ".join(version.strip().splitlines()[0].split()) if version.strip() else "an unknown MPI library"
    return first.replace("MPICH Version:", "MPICH").split(",")[0]


def _mpich_has_pmix(version: str) -> bool | None:
    """Whether this MPICH was configured with PMIx; ``None`` when its version string does not say."""
    for line in version.splitlines():
        if line.startswith("MPICH configure:"):
            return "pmix" in line.lower()
    return None


def _openmpi_major(version: str) -> int | None:
    found = re.search(r"Open MPI v(\d+)", version)
    return int(found.group(1)) if found else None


def compatible(launcher: Launcher, version: str) -> bool | None:
    r"""Whether a process of this MPI library can join the job ``launcher`` started.

    Returns:
        ``True`` (it can), ``False`` (it certainly cannot), ``None`` (unknown:
        left to MPI and to the check after initialization).

    Example:
        >>> mpich_wheel = "MPICH Version: 5.0.2\nMPICH configure: --with-device=ch4:ucx,ofi --with-pm=hydra:gforker"
        >>> compatible(detect({"OMPI_COMM_WORLD_SIZE": "2", "PMIX_RANK": "0"}), mpich_wheel)
        False
        >>> srun_pmi2 = {"PMI_RANK": "0", "PMI_SIZE": "2", "PMI_FD": "5", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
        >>> compatible(detect(srun_pmi2), mpich_wheel)
        True
        >>> compatible(detect({"PMI_RANK": "0", "PMI_SIZE": "2", "PMI_FD": "5"}), "Open MPI v5.0.11")
        False
    """
    family = library_family(version)
    if launcher.protocol == "pmix":
        if family == "openmpi":
            return True
        if family == "mpich" and _mpich_has_pmix(version) is False:
            return False
        return None
    if family == "mpich":
        return True
    if family == "openmpi":
        if not launcher.slurm:
            return False  # MPICH's hydra: Open MPI has no PMI-1 client
        major = _openmpi_major(version)
        return False if major is not None and major >= 5 else None
    return None


def mismatch_message(launcher: Launcher, version: str, mpiexec: str | None) -> str:
    """What :class:`~parallelizer.LaunchMismatchError` says when ``compatible`` is ``False``.

    Args:
        launcher: The launcher that started this process.
        version: ``MPI.Get_library_version()`` of mpi4py's library.
        mpiexec: The ``mpiexec`` that belongs to that library, if one was found.

    Example:
        >>> launcher = detect({"OMPI_COMM_WORLD_SIZE": "2", "PMIX_RANK": "0"})
        >>> text = mismatch_message(launcher, "MPICH Version: 5.0.2", "/venv/bin/mpiexec")
        >>> print(text)  # doctest: +NORMALIZE_WHITESPACE
        this process was started by Open MPI's mpiexec (OMPI_COMM_WORLD_SIZE=2), but mpi4py uses MPICH 5.0.2,
        which cannot join its jobs (MPICH speaks PMI, not PMIx: MPI_Init would abort with "unsupported PMI
        version PMIx"). Launch with the mpiexec of MPICH: '/venv/bin/mpiexec -n 2 python script.py', or let
        parallelizer find it: 'python -m parallelizer -n 2 script.py'.
    """
    family = library_family(version)
    library = LIBRARY_NAMES.get(family, "mpi4py's MPI library")
    count = launcher.size if launcher.size is not None else "N"
    if launcher.protocol == "pmix":
        why = f'{library} speaks PMI, not PMIx: MPI_Init would abort with "unsupported PMI version PMIx"'
    else:
        why = f"{library} does not speak its PMI protocol: every process would start alone, in a world of one"
    if launcher.slurm:
        protocol = "pmi2" if family == "mpich" else "pmix"
        fix = f"Launch with 'srun --mpi={protocol} ...' (see 'srun --mpi=list')"
        if mpiexec:
            fix += f", or inside the allocation with '{mpiexec} -n {count} python script.py'"
        fix += "."
    elif mpiexec:
        fix = (
            f"Launch with the mpiexec of {library}: '{mpiexec} -n {count} python script.py', "
            f"or let parallelizer find it: 'python -m parallelizer -n {count} script.py'."
        )
    else:
        fix = f"Launch with the mpiexec of {library} (none was found on this machine)."
    return (
        f"this process was started by {launcher.name} ({launcher.evidence}), but mpi4py uses "
        f"{short_version(version)}, which cannot join its jobs ({why}). {fix}"
    )
