"""Telling the launcher from the environment, and whether mpi4py's MPI can join it (no processes).

The environments are those the launchers really set (trimmed): Debian's
Open MPI 4.1 ``mpiexec``, the ``mpich`` wheel's hydra ``mpiexec``, and
Slurm's ``srun`` with ``--mpi=pmi2`` and ``--mpi=pmix``.
"""

from __future__ import annotations

import pytest

from parallelizer._mpi.launcher import compatible, detect, library_family, mismatch_message, short_version

OPEN_MPI_MPIEXEC = {
    "OMPI_COMM_WORLD_SIZE": "2",
    "OMPI_COMM_WORLD_RANK": "1",
    "OMPI_UNIVERSE_SIZE": "2",
    "PMIX_NAMESPACE": "966328321",
    "PMIX_RANK": "1",
    "PMIX_SERVER_URI4": "966328320.0;tcp4://127.0.0.1:53547",
}
HYDRA_MPIEXEC = {"HYDI_CONTROL_FD": "7", "PMI_RANK": "0", "PMI_FD": "9", "PMI_SIZE": "2", "MPI_LOCALNRANKS": "2"}
SRUN_PMI2 = {
    "PMI_FD": "11",
    "PMI_JOBID": "81.0",
    "PMI_RANK": "3",
    "PMI_SIZE": "8",
    "SLURM_PROCID": "3",
    "SLURM_NTASKS": "8",
}
SRUN_PMIX = {"PMIX_NAMESPACE": "slurm.pmix.81.0", "PMIX_RANK": "3", "SLURM_PROCID": "3", "SLURM_NTASKS": "8"}
# hydra's mpiexec inside a batch job: the batch shell's SLURM_PROCID is inherited
HYDRA_IN_BATCH_JOB = {**HYDRA_MPIEXEC, "SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "81"}

MPICH_WHEEL = (
    "MPICH Version:      5.0.2\nMPICH Release date: Fri Sep 25 20:45:26 UTC 2026\n"
    "MPICH configure:    --with-device=ch4:ucx,ofi --with-pm=hydra:gforker\n"
)
MPICH_WITH_PMIX = "MPICH Version:      4.2.0\nMPICH configure:    --with-pmix=/usr --with-pm=no\n"
INTEL_MPI = "Intel(R) MPI Library 2021.12 for Linux* OS\n"
OPEN_MPI_5 = "Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11, Sep 16, 2026"
OPEN_MPI_4 = "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022"


@pytest.mark.parametrize(
    "environ, name, protocol, evidence, size, slurm",
    [
        (OPEN_MPI_MPIEXEC, "Open MPI's mpiexec", "pmix", "OMPI_COMM_WORLD_SIZE=2", 2, False),
        (HYDRA_MPIEXEC, "MPICH's hydra mpiexec", "pmi", "PMI_SIZE=2", 2, False),
        (HYDRA_IN_BATCH_JOB, "MPICH's hydra mpiexec", "pmi", "PMI_SIZE=2", 2, False),
        (SRUN_PMI2, "srun --mpi=pmi2", "pmi", "PMI_SIZE=8", 8, True),
        (SRUN_PMIX, "srun --mpi=pmix", "pmix", "PMIX_RANK=3", 8, True),
        (
            {"PMI_RANK": "0", "PMI_PORT": "host:4000"},
            "a PMI launcher (an MPICH-family mpiexec)",
            "pmi",
            "PMI_RANK=0",
            None,
            False,
        ),
    ],
)
def test_launchers_are_recognized(environ, name, protocol, evidence, size, slurm):
    launcher = detect(environ)
    assert launcher is not None
    assert (launcher.name, launcher.protocol, launcher.evidence, launcher.size, launcher.slurm) == (
        name,
        protocol,
        evidence,
        size,
        slurm,
    )


@pytest.mark.parametrize(
    "environ",
    [{}, {"PMI_SIZE": "4"}, {"PMI_RANK": "0"}, {"SLURM_NTASKS": "8", "SLURM_JOB_ID": "81"}],
    ids=["nothing", "size-only", "rank-only", "batch-shell"],
)
def test_no_launcher_without_a_connection_to_one(environ):
    # a size alone, or a batch shell's variables: MPI starts alone, nothing to check before it
    assert detect(environ) is None


def test_library_families_and_short_versions():
    assert [library_family(v) for v in (MPICH_WHEEL, INTEL_MPI, OPEN_MPI_5, "Spectrum X 1.0")] == [
        "mpich",
        "mpich",
        "openmpi",
        "unknown",
    ]
    assert short_version(MPICH_WHEEL) == "MPICH 5.0.2"
    assert short_version(OPEN_MPI_4) == "Open MPI v4.1.4"


@pytest.mark.parametrize(
    "environ, version, expected",
    [
        (OPEN_MPI_MPIEXEC, MPICH_WHEEL, False),  # MPI_Init would abort: "unsupported PMI version PMIx"
        (OPEN_MPI_MPIEXEC, OPEN_MPI_5, True),
        (OPEN_MPI_MPIEXEC, MPICH_WITH_PMIX, None),  # may work: left to MPI
        (OPEN_MPI_MPIEXEC, INTEL_MPI, None),  # its PMIx support is unknown
        (HYDRA_MPIEXEC, MPICH_WHEEL, True),
        (HYDRA_MPIEXEC, INTEL_MPI, True),
        (HYDRA_MPIEXEC, OPEN_MPI_5, False),  # every process would start alone
        (HYDRA_MPIEXEC, OPEN_MPI_4, False),
        (HYDRA_IN_BATCH_JOB, OPEN_MPI_4, False),
        (SRUN_PMI2, MPICH_WHEEL, True),  # the combination that works on clusters: never a mismatch
        (SRUN_PMI2, OPEN_MPI_5, False),  # Open MPI 5 has no PMI-2
        (SRUN_PMI2, OPEN_MPI_4, None),  # Open MPI 4 may, when built with Slurm's PMI-2
        (SRUN_PMIX, MPICH_WHEEL, False),
        (SRUN_PMIX, OPEN_MPI_4, True),
        (HYDRA_MPIEXEC, "Spectrum X 1.0", None),
    ],
)
def test_compatibility(environ, version, expected):
    launcher = detect(environ)
    assert launcher is not None
    assert compatible(launcher, version) is expected


def test_message_for_open_mpi_mpiexec_and_the_mpich_wheel():
    launcher = detect(OPEN_MPI_MPIEXEC)
    assert launcher is not None
    assert mismatch_message(launcher, MPICH_WHEEL, "/venv/bin/mpiexec") == (
        "this process was started by Open MPI's mpiexec (OMPI_COMM_WORLD_SIZE=2), but mpi4py uses MPICH 5.0.2, "
        'which cannot join its jobs (MPICH speaks PMI, not PMIx: MPI_Init would abort with "unsupported PMI '
        "version PMIx\"). Launch with the mpiexec of MPICH: '/venv/bin/mpiexec -n 2 python script.py', or let "
        "parallelizer find it: 'python -m parallelizer -n 2 script.py'."
    )


def test_message_for_hydra_and_open_mpi():
    launcher = detect(HYDRA_MPIEXEC)
    assert launcher is not None
    assert mismatch_message(launcher, OPEN_MPI_5, None) == (
        "this process was started by MPICH's hydra mpiexec (PMI_SIZE=2), but mpi4py uses Open MPI v5.0.11, "
        "which cannot join its jobs (Open MPI does not speak its PMI protocol: every process would start alone, "
        "in a world of one). Launch with the mpiexec of Open MPI (none was found on this machine)."
    )


def test_message_for_srun_names_the_pmi_plugin():
    launcher = detect(SRUN_PMIX)
    assert launcher is not None
    assert mismatch_message(launcher, MPICH_WHEEL, "/venv/bin/mpiexec") == (
        "this process was started by srun --mpi=pmix (PMIX_RANK=3), but mpi4py uses MPICH 5.0.2, which cannot "
        'join its jobs (MPICH speaks PMI, not PMIx: MPI_Init would abort with "unsupported PMI version PMIx"). '
        "Launch with 'srun --mpi=pmi2 ...' (see 'srun --mpi=list'), or inside the allocation with "
        "'/venv/bin/mpiexec -n 8 python script.py'."
    )
