"""tests/mpi_suite.py, which `make test` runs the MPI suite with: one line per rank, a failing rank's whole log."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import time

import mpi_suite
from processes import require_mpiexec

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = require_mpiexec()

FAILS_ON_RANK_1 = """
from mpi4py import MPI

def test_rank():
    print("output of rank", MPI.COMM_WORLD.Get_rank())
    assert MPI.COMM_WORLD.Get_rank() == 0, "rank 1 says no"
"""


def test_doctests():
    assert doctest.testmod(mpi_suite).failed == 0


def _suite(tmp_path, body: str, *sizes: str, timeout: str = "100") -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_job.py").write_text(body)
    counts = [arg for size in sizes or ("2",) for arg in ("-n", size)]
    command = [sys.executable, os.path.join(HERE, "mpi_suite.py"), *counts, "--mpiexec", MPIEXEC, "--timeout", timeout]
    return subprocess.run([*command, "--", "-s", str(tmp_path)], capture_output=True, text=True, timeout=120)


def test_one_line_per_rank_and_the_log_of_a_failing_rank(tmp_path):
    result = _suite(tmp_path, FAILS_ON_RANK_1)
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mpiexec -n 2 (") and lines[0].endswith(f"exit {result.returncode}"), lines
    assert lines[1].startswith("  rank 0: 1 passed in "), lines
    assert lines[2].startswith("  rank 1: 1 failed in "), lines
    assert "---- rank 1 ----" in result.stdout and "rank 1 says no" in result.stdout
    assert "---- rank 0 ----" not in result.stdout and "output of rank 0" not in result.stdout


def test_a_passing_job_prints_only_its_summary(tmp_path):
    result = _suite(tmp_path, FAILS_ON_RANK_1.replace("== 0", ">= 0"))
    assert result.returncode == 0, result.stdout
    assert len(result.stdout.splitlines()) == 3, result.stdout


def test_jobs_side_by_side_then_one_after_another(tmp_path):
    result = _suite(tmp_path, FAILS_ON_RANK_1, "1,2", "3")
    assert result.returncode != 0  # rank 1 of the 2-rank job failed: the 3-rank job never started
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mpiexec -n 1 (") and lines[0].endswith("exit 0"), lines
    assert lines[1].startswith("  rank 0: 1 passed in "), lines
    assert lines[2].startswith("mpiexec -n 2 (") and lines[2].endswith(f"exit {result.returncode}"), lines
    assert "---- rank 1 ----" in result.stdout and "mpiexec -n 3" not in result.stdout
    passing = _suite(tmp_path, FAILS_ON_RANK_1.replace("== 0", ">= 0"), "1,2", "3")
    assert passing.returncode == 0, passing.stdout
    assert [line.split(" (")[0] for line in passing.stdout.splitlines() if line.startswith("mpiexec")] == [
        "mpiexec -n 1",
        "mpiexec -n 2",
        "mpiexec -n 3",
    ]


def test_a_job_past_its_timeout_is_killed_whole_and_reported(tmp_path):
    started = time.monotonic()
    result = _suite(tmp_path, "import time\n\ndef test_stuck():\n    time.sleep(300)\n", "1,2", timeout="8")
    assert time.monotonic() - started < 60  # its ranks too: none of them keeps the runner waiting
    assert result.returncode == 124, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mpiexec -n 1 (") and lines[0].endswith("exit 124"), lines
    assert "killed after 8 s" in result.stdout
