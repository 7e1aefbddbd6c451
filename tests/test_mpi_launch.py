"""Jobs launched with mpiexec: aborts instead of hangs, the command line, and
the diagnosis of a launcher that does not match the MPI library."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
from processes import clean_environment, mpiexec_command, require_mpiexec

from parallelizer._mpi import runtime

HERE = os.path.dirname(os.path.abspath(__file__))
FAIL = os.path.join(HERE, "scripts", "mpi_fail.py")
MPIEXEC = require_mpiexec()
# What info shows for each MPI library's own mpiexec (tools/mpi_matrix.py runs this file under each)
LIBRARY = runtime.library_version()
MPIEXEC_NAME, SIZE_VARIABLE = (
    ("Open MPI's mpiexec", "OMPI_COMM_WORLD_SIZE")
    if LIBRARY.startswith("Open MPI")
    else ("Intel MPI's hydra mpiexec", "PMI_SIZE")
    if LIBRARY.startswith("Intel")
    else ("MPICH's hydra mpiexec", "PMI_SIZE")
)
TIMEOUT = 120


def _run(args, env=None, timeout=TIMEOUT):
    full_env = clean_environment()
    full_env.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env)


def _mpiexec(n, *args):
    return _run([*mpiexec_command(n, MPIEXEC), sys.executable, *args])


@pytest.mark.parametrize("nprocs", [2, 3])
def test_exception_in_run_aborts_the_whole_job(nprocs):
    failing = nprocs - 1
    result = _mpiexec(nprocs, FAIL, "raise-in-run", str(failing))
    assert result.returncode != 0
    assert f"[rank {failing}] ValueError: rank {failing} cannot go on" in result.stderr
    assert f"[rank {failing}] rank {failing} on {socket.gethostname()} aborts the MPI job: ValueError" in result.stderr
    assert "<result" not in result.stdout


def test_unpicklable_object_aborts_with_a_clear_message():
    result = _mpiexec(3, FAIL, "unpicklable", "1")
    assert result.returncode != 0
    assert (
        "[rank 1] parallelizer.errors.SerializationError: cannot pickle the object broadcast from rank 1"
        in result.stderr
    )


@pytest.mark.parametrize("how", ["raise-in-script", "exit-in-script"])
def test_failure_outside_run_aborts_under_python_m_parallelizer(how):
    result = _mpiexec(2, "-m", "parallelizer", FAIL, how, "1")
    assert result.returncode != 0
    if how == "raise-in-script":
        assert "[rank 1] KeyError: 'outside run'" in result.stderr
    else:
        assert "[rank 1] SystemExit: 3" in result.stderr


def _started(stdout):
    # the ranks' output interleaves, so look for tokens, not lines
    return sorted(re.findall(r"<(started \d+/\d+ \w+)>", stdout))


def test_healthy_job_under_python_m_parallelizer():
    result = _mpiexec(3, "-m", "parallelizer", FAIL, "none", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("<result [0, 1, 2]>") == 3
    assert _started(result.stdout) == [f"started {rank}/3 MPIParallelizer" for rank in range(3)]


def test_dash_n_launches_with_the_installed_mpiexec():
    result = _run([sys.executable, "-m", "parallelizer", "-n", "2", FAIL, "none", "0"])
    assert result.returncode == 0, result.stderr
    assert _started(result.stdout) == ["started 0/2 MPIParallelizer", "started 1/2 MPIParallelizer"]


def test_dash_n_failure_aborts():
    result = _run([sys.executable, "-m", "parallelizer", "-n", "2", FAIL, "raise-in-run", "0"])
    assert result.returncode != 0 and "[rank 0] ValueError" in result.stderr


def test_script_runs_like_python_without_mpi():
    result = _run([sys.executable, "-m", "parallelizer", FAIL, "none", "0"])
    assert result.returncode == 0, result.stderr
    assert "<started 0/1 SerialNonParallelizer>" in result.stdout
    failing = _run([sys.executable, "-m", "parallelizer", FAIL, "raise-in-script", "0"])
    assert failing.returncode == 1 and "KeyError: 'outside run'" in failing.stderr
    assert _run([sys.executable, "-m", "parallelizer", "missing.py"]).returncode == 2


def test_info():
    result = _run([sys.executable, "-m", "parallelizer", "info"])
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for expected in (
        "parallelizer ",
        "numpy ",
        "mpi4py ",
        f"MPI library  {LIBRARY}",
        f"mpiexec      {MPIEXEC}",
        "launcher     none (not started by mpiexec/srun)",
        "lookup(None) serial, because nothing else applies",
    ):
        assert expected in text
    assert "multiprocessing: available" in text and "mpi: available" in text
    under_env = _run([sys.executable, "-m", "parallelizer", "info"], env={"PARALLELIZER": "multiprocessing:3"})
    assert "lookup(None) multiprocessing with {'nprocs': 3}" in under_env.stdout


def test_info_under_mpiexec_prints_one_report_with_the_layout():
    result = _mpiexec(3, "-m", "parallelizer", "info")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("parallelizer ") == 1, result.stdout  # rank 0 alone reports
    host = socket.gethostname()
    assert f"layout       3 ranks on 1 host: {host} (ranks 0-2)" in result.stdout.splitlines()
    assert f"launcher     {MPIEXEC_NAME}, 3 processes ({SIZE_VARIABLE}=3)" in result.stdout


SINGLETON = """
from parallelizer import MPIParallelizer
MPIParallelizer().run(lambda parallelizer: parallelizer.barrier())
print(sorted({line.split()[-1] for line in open("/proc/self/maps") if " /dev/shm/" in line}))
"""


def test_a_singleton_leaves_no_shared_memory_behind():
    # Open MPI 5 started without mpiexec leaves its 16 MiB /dev/shm/sm_segment.* after every run
    result = _run([sys.executable, "-c", SINGLETON])
    assert result.returncode == 0, result.stderr
    mapped = eval(result.stdout.strip().splitlines()[-1])  # a list of paths, printed by SINGLETON
    assert [path for path in mapped if os.path.exists(path)] == []


def test_a_world_of_one_under_a_launcher_of_several_is_diagnosed():
    # The check after MPI_Init, for what the environment alone cannot tell:
    # the launcher says 4 ranks (and nothing else), MPI initializes alone.
    # (tests/test_wrong_launcher.py: launchers recognized before MPI_Init.)
    code = "from parallelizer import Parallelizer; Parallelizer.lookup(None)"
    result = _run([sys.executable, "-c", code], env={"PMI_SIZE": "4"})
    assert result.returncode != 0
    assert "LaunchMismatchError" in result.stderr
    assert "started 4 processes (PMI_SIZE=4)" in result.stderr
    assert "world of 1" in result.stderr and "python -m parallelizer -n 4" in result.stderr
    assert f"'{MPIEXEC} -n 4 python script.py'" in result.stderr


def test_missing_mpi4py_names_the_install_command():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "from parallelizer import MPIParallelizer\n"
        "try:\n    MPIParallelizer()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    result = _run([sys.executable, "-c", code])
    assert "pip install 'parallelizer[mpi]'" in result.stdout


def test_lookup_none_under_mpiexec_picks_mpi_only_with_several_ranks():
    code = "from parallelizer import Parallelizer; print('<' + type(Parallelizer.lookup(None)).__name__ + '>')"
    assert re.findall(r"<(\w+)>", _mpiexec(2, "-c", code).stdout) == ["MPIParallelizer"] * 2
    assert re.findall(r"<(\w+)>", _mpiexec(1, "-c", code).stdout) == ["SerialNonParallelizer"]


def test_a_module_runs_like_python_m():
    result = _run([sys.executable, "-m", "parallelizer", "-m", "timeit", "-n", "2", "-r", "1", "pass"])
    assert result.returncode == 0, result.stderr
    assert "2 loops" in result.stdout
    pooled = _mpiexec(2, "-m", "parallelizer", "--pool", "-m", "timeit", "-n", "2", "-r", "1", "pass")
    assert pooled.returncode == 0, pooled.stderr
    assert pooled.stdout.count("2 loops") == 1  # --pool: rank 0 alone runs it


def test_an_executor_dropped_by_a_pool_script_is_shut_down_at_its_end():
    result = _mpiexec(3, "-m", "parallelizer", "--pool", os.path.join(HERE, "scripts", "dropped_executor.py"))
    assert result.returncode == 0, result.stderr  # servers were told to leave mid-session: "unknown message Final"
    assert result.stdout.split() == ["sum", str(2**20 - 1)]
    assert "Traceback" not in result.stderr
