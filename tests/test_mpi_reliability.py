"""Issue 11's reliability cases that need a whole MPI job, each run under mpiexec.

A stuck rank with ``timeout=`` aborts the job with a TimeoutError naming the
call and the ranks; debug mode turns waits on a returned rank into
DeadlockError/CollectiveMismatchError; an exception that cannot be printed
is still reported; ``python -m parallelizer`` aborts and prefixes the rank
even when the script builds no parallelizer; an aborted job leaves no
shared memory behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from processes import clean_environment, mpiexec_command, require_mpiexec, shm_files, shm_left_behind

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scripts", "mpi_reliability.py")
MPIEXEC = require_mpiexec()
TIMEOUT = 90


def _mpiexec(n, *args, env=None):
    full_env = clean_environment(**(env or {}))
    started = time.monotonic()
    result = subprocess.run(
        [*mpiexec_command(n, MPIEXEC), sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=full_env,
    )
    return result, time.monotonic() - started


def test_a_stuck_rank_times_out_and_aborts_the_job():
    result, took = _mpiexec(3, SCRIPT, "timeout")
    assert result.returncode != 0
    assert took < 30, "the job must end long before the stuck rank would have"
    assert "TimeoutError: rank 0 waited more than 1 s in allreduce() for rank(s)" in result.stderr, result.stderr
    assert "<result" not in result.stdout


def test_timeout_from_the_environment():
    result, took = _mpiexec(2, SCRIPT, "timeout", env={"PARALLELIZER_TIMEOUT": "0.5"})
    assert result.returncode != 0 and took < 30
    assert "waited more than 1 s" in result.stderr  # timeout= of the constructor wins over the variable


def test_debug_mode_detects_a_recv_nobody_will_answer():
    result, _ = _mpiexec(2, SCRIPT, "debug-recv")
    assert result.returncode == 0, result.stderr
    assert "<detected: rank 0 waits in recv(source=1, tag=5) for rank(s) 1, which already returned" in result.stdout
    assert "<again [0, 1]>" in result.stdout  # later runs are not confused by the notices


def test_debug_mode_detects_a_collective_a_returned_rank_never_calls():
    result, _ = _mpiexec(3, SCRIPT, "debug-collective")
    assert result.returncode == 0, result.stderr
    assert "ranks 1, 2 called nothing (it had returned from func)" in result.stdout, result.stdout


def test_an_exception_that_cannot_be_printed_is_still_reported():
    result, _ = _mpiexec(2, SCRIPT, "unprintable")
    assert result.returncode != 0
    assert "[rank 1]" in result.stderr and "UnprintableError" in result.stderr


def test_python_m_parallelizer_aborts_a_script_without_parallelizer():
    result, took = _mpiexec(2, "-m", "parallelizer", SCRIPT, "no-parallelizer")
    assert result.returncode != 0
    assert "[rank 0] ValueError: rank 0 gives up before any parallelizer exists" in result.stderr
    assert "[rank 0] Traceback (most recent call last):" in result.stderr
    assert "runpy" not in result.stderr and "parallelizer/cli.py" not in result.stderr
    assert "<finished>" not in result.stdout and took < 25  # the other rank was stopped


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this system")
def test_an_aborted_job_leaves_no_shared_memory_behind():
    before = shm_files()
    for _ in range(3):
        result, _ = _mpiexec(2, SCRIPT, "unprintable")
        assert result.returncode != 0
    left = shm_left_behind(before, prefixes=("mpich_shm_",))
    assert left == set(), f"aborted jobs left {sorted(left)} in /dev/shm"
